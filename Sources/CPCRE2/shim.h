/// PCRE2 with 8-bit code units; call the _8 names (the unsuffixed ones are macros).
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
