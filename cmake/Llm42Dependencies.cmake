# Third-party libraries, all from Debian packages (see .ci/run for the apt list).
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(fmt REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
find_path(XXHASH_INCLUDE_DIR xxhash.h REQUIRED)

# PCRE2 is linked statically where the static archive exists, so the binaries carry no
# dependency beyond libc, libstdc++, libgomp and (with CUDA) cuBLAS.
find_library(PCRE2_STATIC_LIB NAMES libpcre2-8.a)
add_library(llm42_pcre2 INTERFACE)
target_compile_definitions(llm42_pcre2 INTERFACE PCRE2_CODE_UNIT_WIDTH=8)
if(PCRE2_STATIC_LIB)
  target_include_directories(llm42_pcre2 INTERFACE ${PCRE2_INCLUDE_DIRS})
  target_link_libraries(llm42_pcre2 INTERFACE ${PCRE2_STATIC_LIB})
else()
  target_link_libraries(llm42_pcre2 INTERFACE PkgConfig::PCRE2)
endif()

# xxHash is used header-only (XXH_INLINE_ALL), fmt header-only: nothing to link.
add_library(llm42_xxhash INTERFACE)
target_include_directories(llm42_xxhash INTERFACE ${XXHASH_INCLUDE_DIR})
target_compile_definitions(llm42_xxhash INTERFACE XXH_INLINE_ALL)
