# Writes a C++ source holding a file's bytes, for files compiled into a binary (the dashboard).
# Run as a script at build time:
#   cmake -DINPUT=page.html -DOUTPUT=page.cpp -DHEADER=page.h -DNAMESPACE=ns -DFUNCTION=name
#         -P EmbedFile.cmake
# The source defines `std::string_view NAMESPACE::FUNCTION()`, declared in HEADER. A byte array
# rather than a string literal: any content is safe, and there is no literal length limit.
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hex_length)
math(EXPR size "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
# One line per 16 bytes keeps the generated file readable in an editor.
string(REPEAT "0x[0-9a-f][0-9a-f]," 16 sixteen)
string(REGEX REPLACE "(${sixteen})" "\\1\n    " bytes "${bytes}")
get_filename_component(input_name "${INPUT}" NAME)
file(WRITE "${OUTPUT}.tmp"
"// Generated from ${input_name} by EmbedFile.cmake; edit the original, not this file.
#include \"${HEADER}\"

namespace ${NAMESPACE} {
namespace {
const unsigned char kBytes[${size} + 1] = {
    ${bytes}0x00};
}  // namespace

std::string_view ${FUNCTION}() {
  return {reinterpret_cast<const char*>(kBytes), ${size}};
}

}  // namespace ${NAMESPACE}
")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
