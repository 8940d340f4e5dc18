# Debian packages with CPack, one per install component (cmake/Install.cmake):
#   v2broker      the daemon, v2ctl, the systemd units, /etc/v2broker/v2broker.conf, and the
#                 maintainer scripts that create the v2broker system user and enable the units
#   v2broker-dev  headers, static libraries, the CMake package and v2broker.pc
# Two packages because they serve different machines: a host that runs the broker needs no
# headers, and a machine that builds clients needs neither the service nor its system user.
#
# Build them from a tree configured with -DCMAKE_INSTALL_PREFIX=/usr:
#   cpack --config build/deb/CPackConfig.cmake -B build/deb/packages
# (scripts/check-deb does this, runs lintian and installs, exercises and purges the package).

set(V2_DEB_MAINTAINER "v2broker maintainers <maintainers@v2broker.example>"
    CACHE STRING "Maintainer field of the Debian packages")

set(v2_debian ${PROJECT_SOURCE_DIR}/packaging/debian)

# Files every Debian package carries in /usr/share/doc/<package>: copyright, and the changelog
# compressed with gzip -9n (no name, no time stamp, so the package builds reproducibly; made
# when CMake configures, so installing a component needs no extra build target). They install
# only with their component (cpack, or cmake --install --component), not with a plain
# cmake --install.
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${v2_debian}/changelog)
file(MAKE_DIRECTORY ${PROJECT_BINARY_DIR}/package)
execute_process(COMMAND gzip -9nc ${v2_debian}/changelog
  OUTPUT_FILE ${PROJECT_BINARY_DIR}/package/changelog.gz RESULT_VARIABLE v2_gzip_result)
if(NOT v2_gzip_result EQUAL 0)
  message(FATAL_ERROR "gzip -9nc ${v2_debian}/changelog: ${v2_gzip_result}")
endif()
foreach(component broker dev)
  set(package v2broker)
  if(component STREQUAL "dev")
    set(package v2broker-dev)
  endif()
  install(FILES ${v2_debian}/copyright ${PROJECT_BINARY_DIR}/package/changelog.gz
    DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/${package}
    COMPONENT ${component} EXCLUDE_FROM_ALL)
endforeach()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME v2broker)
set(CPACK_PACKAGE_VENDOR "v2broker")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${V2_DEB_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${V2_DEB_MAINTAINER}")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL broker dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_DEBIAN_BROKER_PACKAGE_NAME v2broker)
set(CPACK_DEBIAN_BROKER_PACKAGE_SECTION net)
set(CPACK_DEBIAN_BROKER_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_BROKER_PACKAGE_CONTROL_EXTRA
  ${v2_debian}/postinst ${v2_debian}/prerm ${v2_debian}/postrm ${v2_debian}/conffiles)
# A component's description: its first line is the package's summary. CPack puts
# CPACK_PACKAGE_DESCRIPTION_SUMMARY (by default the project's description) in front of it
# unless that is CPack's own placeholder, so the placeholder it is.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${CMAKE_PROJECT_NAME} built using CMake")
set(CPACK_COMPONENT_BROKER_DESCRIPTION "low-latency local message broker over Unix sockets
v2broker routes requests, responses and events between the processes of one
host over a Unix socket, in NDJSON lines or binary frames. Its worker threads
are pinned to CPUs with raised CPU and I/O priority where the capabilities
allow, and it reports which tunings are in force.
.
This package holds the daemon, the v2ctl command-line client, the systemd
service and socket units (the service runs as the system user v2broker with
CAP_SYS_NICE and CAP_SYS_ADMIN) and /etc/v2broker/v2broker.conf.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME v2broker-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
# The static libraries need these to link; the CMake package finds libcap through pkg-config.
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "libcap-dev, libsimdjson-dev, pkgconf | pkg-config")
set(CPACK_COMPONENT_DEV_DESCRIPTION "v2broker optimizer, wire codec and client libraries
The libraries of the v2broker message broker, as static libraries with their
headers: the optimizer (a bounded queue feeding pinned, prioritised worker
threads), the NDJSON and binary wire codec, and the C++ client API.
.
Use them from CMake with find_package(v2broker) and the targets
v2broker::optimizer and v2broker::client, or with pkg-config v2broker.")

# A package built from a tree configured for another prefix would name that prefix's paths in
# its units: refuse it when cpack runs.
set(V2_PACKAGE_CONFIGURED_PREFIX ${CMAKE_INSTALL_PREFIX})
configure_file(${CMAKE_CURRENT_LIST_DIR}/CPackOptions.cmake.in
  ${PROJECT_BINARY_DIR}/package/CPackOptions.cmake @ONLY)
set(CPACK_PROJECT_CONFIG_FILE ${PROJECT_BINARY_DIR}/package/CPackOptions.cmake)

include(CPack)
