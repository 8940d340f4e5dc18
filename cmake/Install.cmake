# What `cmake --install` puts where: the daemon and v2ctl, the public headers, the optimizer,
# wire and client libraries with a CMake package (find_package(v2broker) and the imported
# targets v2broker::optimizer, v2broker::wire, v2broker::client) and a pkg-config file, the
# default configuration file and the systemd units.
#
# Two install components, which are also the two Debian packages (cmake/Packaging.cmake):
#   broker  the daemon, v2ctl, /etc/v2broker/v2broker.conf, the systemd units
#   dev     headers, libraries, CMake package, v2broker.pc
# Tests and benchmarks install nothing.
#
# The libraries are static unless BUILD_SHARED_LIBS is on. Static libraries carry their private
# dependencies to the consumer's link line (simdjson, libcap, threads), so the CMake package
# finds them again and v2broker.pc lists them in Requires; shared ones get a SOVERSION and list
# them in Requires.private only.

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(V2_CMAKE_DIR ${CMAKE_CURRENT_LIST_DIR})
set(V2_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/v2broker
    CACHE STRING "Where the CMake package files go, relative to the prefix")

# For a /usr prefix (the Debian package), systemd's own unit directory: /lib/systemd/system on
# Debian 12, /usr/lib/systemd/system later.
set(V2_SYSTEMD_UNITDIR_FOR_USR /lib/systemd/system)
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_get_variable(v2_systemd_unitdir systemd systemdsystemunitdir)
  if(v2_systemd_unitdir)
    set(V2_SYSTEMD_UNITDIR_FOR_USR ${v2_systemd_unitdir})
  endif()
endif()

# Libraries: installed names that say whose they are, and an ABI version when shared.
set(v2_libraries v2_optimizer v2_wire v2_client)
foreach(target IN LISTS v2_libraries)
  string(REPLACE "v2_" "" part ${target})
  set_target_properties(${target} PROPERTIES
    OUTPUT_NAME v2broker-${part}
    EXPORT_NAME ${part}
    VERSION ${PROJECT_VERSION}
    SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
endforeach()
get_target_property(v2_library_type v2_optimizer TYPE)
if(v2_library_type STREQUAL "STATIC_LIBRARY")
  set(V2_STATIC_LIBRARIES ON)
else()
  set(V2_STATIC_LIBRARIES OFF)
endif()

install(TARGETS ${v2_libraries} EXPORT v2brokerTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/v2broker
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev
  FILES_MATCHING PATTERN "*.hpp")

install(EXPORT v2brokerTargets NAMESPACE v2broker:: FILE v2brokerTargets.cmake
  DESTINATION ${V2_INSTALL_CMAKEDIR} COMPONENT dev)
configure_package_config_file(${V2_CMAKE_DIR}/v2brokerConfig.cmake.in
  ${PROJECT_BINARY_DIR}/package/v2brokerConfig.cmake
  INSTALL_DESTINATION ${V2_INSTALL_CMAKEDIR})
# 0.x releases make no promise across minor versions: 0.1 accepts 0.1.*, not 0.2.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/package/v2brokerConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/package/v2brokerConfig.cmake
              ${PROJECT_BINARY_DIR}/package/v2brokerConfigVersion.cmake
  DESTINATION ${V2_INSTALL_CMAKEDIR} COMPONENT dev)

# pkg-config: static libraries need their dependencies on every link, shared ones only for
# --static.
if(V2_STATIC_LIBRARIES)
  set(V2_PC_REQUIRES "libcap simdjson")
  set(V2_PC_REQUIRES_PRIVATE "")
else()
  set(V2_PC_REQUIRES "")
  set(V2_PC_REQUIRES_PRIVATE "libcap simdjson")
endif()
# The prefix is found from where the .pc file is, so an install with `cmake --install --prefix`
# elsewhere than the configured prefix still works; /usr, the packaged prefix, is written out.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(V2_PC_PREFIX /usr)
else()
  file(RELATIVE_PATH v2_pc_up /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
  string(REGEX REPLACE "/$" "" v2_pc_up "${v2_pc_up}")
  set(V2_PC_PREFIX "\${pcfiledir}/${v2_pc_up}")
endif()
foreach(dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(V2_PC_${dir} ${CMAKE_INSTALL_${dir}})
  else()
    set(V2_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
configure_file(${V2_CMAKE_DIR}/v2broker.pc.in ${PROJECT_BINARY_DIR}/package/v2broker.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/package/v2broker.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)

# The programs.
install(TARGETS v2broker v2ctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT broker)

# The configuration file and the units. Where they go and the paths they name are decided when
# they are installed, from the prefix of that install (cmake --install --prefix, or /usr under
# cpack): /etc/v2broker and systemd's unit directory for /usr, etc/v2broker and
# lib/systemd/system under any other prefix (systemd also reads /usr/local/lib/systemd/system).
install(CODE "
  set(v2_packaging [[${PROJECT_SOURCE_DIR}/packaging]])
  set(v2_staging [[${PROJECT_BINARY_DIR}/package/installed]])
  set(v2_bindir [[${CMAKE_INSTALL_BINDIR}]])
  set(v2_sysconfdir [[${CMAKE_INSTALL_SYSCONFDIR}]])
  set(v2_unitdir_for_usr [[${V2_SYSTEMD_UNITDIR_FOR_USR}]])
  include([[${V2_CMAKE_DIR}/InstallUnits.cmake]])
  " COMPONENT broker)
