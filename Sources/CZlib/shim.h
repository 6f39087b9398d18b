/// zlib, for inflating gzip and deflate HTTP bodies (FlexIDS' HTTPBodyDecoder).
#include <zlib.h>
