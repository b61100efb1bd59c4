# Finds SOCI 4.x as packaged by Debian (libsoci-dev), which ships no CMake config
# and no pkg-config file.
#
# Imported targets:
#   SOCI::core        soci_core
#   SOCI::sqlite3     soci_sqlite3 (+ SOCI::core)
#   SOCI::postgresql  soci_postgresql (+ SOCI::core, libpq include path)
#
# Debian's soci-config.h enables Boost integration, so <soci/soci.h> needs the
# Boost headers (libboost-dev) even though the package does not depend on them.

find_path(SOCI_INCLUDE_DIR NAMES soci/soci.h)
find_library(SOCI_CORE_LIBRARY NAMES soci_core)
find_library(SOCI_SQLITE3_LIBRARY NAMES soci_sqlite3)
find_library(SOCI_POSTGRESQL_LIBRARY NAMES soci_postgresql)
find_path(SOCI_PQ_INCLUDE_DIR NAMES libpq-fe.h PATH_SUFFIXES postgresql)
find_package(Boost QUIET)

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(SOCI
  REQUIRED_VARS SOCI_INCLUDE_DIR SOCI_CORE_LIBRARY SOCI_SQLITE3_LIBRARY
                SOCI_POSTGRESQL_LIBRARY SOCI_PQ_INCLUDE_DIR Boost_FOUND)

if(SOCI_FOUND AND NOT TARGET SOCI::core)
  add_library(SOCI::core UNKNOWN IMPORTED)
  set_target_properties(SOCI::core PROPERTIES
    IMPORTED_LOCATION "${SOCI_CORE_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${SOCI_INCLUDE_DIR};${Boost_INCLUDE_DIRS}"
    INTERFACE_LINK_LIBRARIES "${CMAKE_DL_LIBS}")

  add_library(SOCI::sqlite3 UNKNOWN IMPORTED)
  set_target_properties(SOCI::sqlite3 PROPERTIES
    IMPORTED_LOCATION "${SOCI_SQLITE3_LIBRARY}"
    INTERFACE_LINK_LIBRARIES SOCI::core)

  add_library(SOCI::postgresql UNKNOWN IMPORTED)
  set_target_properties(SOCI::postgresql PROPERTIES
    IMPORTED_LOCATION "${SOCI_POSTGRESQL_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${SOCI_PQ_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES SOCI::core)
endif()

mark_as_advanced(SOCI_INCLUDE_DIR SOCI_CORE_LIBRARY SOCI_SQLITE3_LIBRARY
                 SOCI_POSTGRESQL_LIBRARY SOCI_PQ_INCLUDE_DIR)
