// dalle.h: the public C API of libdalle, DALL-E (Ramesh et al. 2021) in C.
// Include this one header. Every function that can fail returns DALLE_OK (0)
// or DALLE_ERR (-1), or NULL, and leaves a message for dalle_last_error().
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

#define DALLE_VERSION "0.1.0"

enum { DALLE_OK = 0, DALLE_ERR = -1 };

// The message of the last failure on this thread ("" if none). Never NULL;
// owned by the library, valid until the next failing call on this thread.
const char *dalle_last_error(void);

#ifdef __cplusplus
}
#endif

#include "dalle/dvae.h"
#include "dalle/bpe.h"
#include "dalle/prior.h"
#include "dalle/generate.h"
