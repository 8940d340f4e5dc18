# Runs at install time (install(CODE) in Install.cmake), with CMAKE_INSTALL_PREFIX and DESTDIR
# of that install. Installs the configuration file and the systemd units, with the paths of
# this prefix written into them: the files in packaging/ name /usr/bin and /etc/v2broker, as
# the Debian package installs them.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(v2_conf_dir /etc/v2broker)
  set(v2_unit_dir ${v2_unitdir_for_usr})
else()
  set(v2_conf_dir ${CMAKE_INSTALL_PREFIX}/${v2_sysconfdir}/v2broker)
  set(v2_unit_dir ${CMAKE_INSTALL_PREFIX}/lib/systemd/system)
endif()

file(MAKE_DIRECTORY ${v2_staging})
foreach(source systemd/v2broker.service systemd/v2broker.socket etc/v2broker.conf)
  file(READ ${v2_packaging}/${source} text)
  string(REPLACE "/usr/bin/" "${CMAKE_INSTALL_PREFIX}/${v2_bindir}/" text "${text}")
  string(REPLACE "/etc/v2broker/" "${v2_conf_dir}/" text "${text}")
  get_filename_component(name ${source} NAME)
  file(WRITE ${v2_staging}/${name} "${text}")
endforeach()

file(INSTALL ${v2_staging}/v2broker.service ${v2_staging}/v2broker.socket
  DESTINATION ${v2_unit_dir} FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
file(INSTALL ${v2_staging}/v2broker.conf
  DESTINATION ${v2_conf_dir} FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
