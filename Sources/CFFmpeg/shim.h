// The C side of MediaKit: FFmpeg's headers, plus the macros Swift cannot import re-exposed as inline functions.
#ifndef CINESCALE_CFFMPEG_SHIM_H
#define CINESCALE_CFFMPEG_SHIM_H

#include <libavformat/avformat.h>
#include <libavformat/avio.h>
#include <libavcodec/avcodec.h>
#include <libavutil/avutil.h>
#include <libavutil/display.h>
#include <libavutil/error.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
#include <libswresample/swresample.h>

static inline int cinescale_averror(int errnum) { return AVERROR(errnum); }
static inline int cinescale_averror_eof(void) { return AVERROR_EOF; }
static inline int cinescale_averror_invaliddata(void) { return AVERROR_INVALIDDATA; }
static inline int64_t cinescale_nopts_value(void) { return AV_NOPTS_VALUE; }
static inline AVRational cinescale_time_base_q(void) { return AV_TIME_BASE_Q; }
static inline int cinescale_avseek_size(void) { return AVSEEK_SIZE; }
static inline int cinescale_avseek_force(void) { return AVSEEK_FORCE; }

#endif
