// The C side of MediaKit: FFmpeg's headers, plus the macros Swift cannot import re-exposed as inline functions.
#ifndef CINESCALE_CFFMPEG_SHIM_H
#define CINESCALE_CFFMPEG_SHIM_H

#include <libavformat/avformat.h>
#include <libavformat/avio.h>
#include <libavcodec/avcodec.h>
#include <libavfilter/avfilter.h>
#include <libavfilter/buffersink.h>
#include <libavfilter/buffersrc.h>
#include <libavutil/audio_fifo.h>
#include <libavutil/avutil.h>
#include <libavutil/channel_layout.h>
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
/// A frame's sample planes as `void **`, the type AVAudioFifo takes.
static inline void **cinescale_frame_planes(AVFrame *frame) { return (void **)frame->extended_data; }

/// FFmpeg's last error-level log line on this thread, so a failure can say what FFmpeg said ("moov atom not
/// found", "Picture size 16384x16384 is invalid") instead of only an AVERROR code. Nothing goes to stderr.
/// (A function-local static: a header-only shim has no translation unit to define a global in.)
static inline char *cinescale_log_line(void) {
    static __thread char line[512];
    return line;
}

static void cinescale_log_callback(void *avcl, int level, const char *fmt, va_list vl) {
    if (level > AV_LOG_ERROR) return;
    int print_prefix = 0;
    av_log_format_line2(avcl, level, fmt, vl, cinescale_log_line(), 512, &print_prefix);
}

static inline void cinescale_log_capture(void) { av_log_set_callback(cinescale_log_callback); }
static inline const char *cinescale_log_last(void) { return cinescale_log_line(); }
static inline void cinescale_log_clear(void) { cinescale_log_line()[0] = 0; }

#endif
