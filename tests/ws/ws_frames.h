/* tests/ws/ws_frames.h - helpers shared by the WebSocket unit tests and
   fuzz targets: a client-side frame builder (masked, as RFC 6455 5.3 asks of
   clients) and a transcript of what chopin.h's frame parser reports for a
   byte stream fed in pieces, so that two ways of cutting the same stream can
   be compared. Include after chopin.h's implementation. */
#ifndef WS_FRAMES_H
#define WS_FRAMES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends a client frame to out (room: len + 14): byte 0 as given (FIN,
   RSV, opcode), the length in the shortest form unless len_form forces 126
   or 127, masked with key unless key is NULL. Returns the frame's size. */
static size_t wsf_frame(unsigned char *out, unsigned b0, const void *payload, size_t len, const unsigned char *key,
                        int len_form)
{
    size_t o = 0, i;
    const unsigned char *p = (const unsigned char *)payload;
    unsigned mask_bit = key ? 0x80u : 0u;
    out[o++] = (unsigned char)b0;
    if (len_form == 0) len_form = len < 126 ? 0 : len <= 0xFFFF ? 126 : 127;
    if (len_form == 0 || (len_form != 126 && len_form != 127)) {
        out[o++] = (unsigned char)(mask_bit | len);
    } else if (len_form == 126) {
        out[o++] = (unsigned char)(mask_bit | 126);
        out[o++] = (unsigned char)(len >> 8);
        out[o++] = (unsigned char)len;
    } else {
        out[o++] = (unsigned char)(mask_bit | 127);
        for (i = 0; i < 8; i++) out[o++] = (unsigned char)((unsigned long long)len >> (56 - 8 * i));
    }
    if (key) {
        memcpy(out + o, key, 4);
        o += 4;
    }
    for (i = 0; i < len; i++) out[o + i] = (unsigned char)(key ? p[i] ^ key[i & 3] : p[i]);
    return o + len;
}

/* The parser's events over a stream, as text: "T5:Hello;" (a text message
   and its bytes), "B3:...;", "ping2:..;", "pong0:;", "close1000:reason;",
   "E1002;". Payload bytes that are not printable show as '.'. */
typedef struct wsf_transcript {
    char *text;
    size_t len, cap;
    unsigned char *msg; /* the message being reassembled */
    size_t msg_len, msg_cap;
    int data_events;    /* DATA events seen (the pieces) */
    size_t error_at;    /* stream offset just after the byte that failed */
} wsf_transcript;

static void wsf_put(wsf_transcript *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->text = (char *)realloc(t->text, t->cap);
    }
    memcpy(t->text + t->len, s, n);
    t->len += n;
    t->text[t->len] = 0;
}

static void wsf_put_item(wsf_transcript *t, const char *tag, const unsigned char *p, size_t n)
{
    char head[48];
    size_t i;
    snprintf(head, sizeof head, "%s%zu:", tag, n);
    wsf_put(t, head, strlen(head));
    for (i = 0; i < n; i++) {
        char c = (char)(p[i] >= 32 && p[i] < 127 ? p[i] : '.');
        wsf_put(t, &c, 1);
    }
    wsf_put(t, ";", 1);
}

/* Feeds buf[0, n) to ps, cut at the given points. Stops at an error.
   Returns 1 if the parser reported an error. */
static int wsf_run(chi_ws_parser *ps, unsigned char *buf, size_t n, const size_t *cuts, size_t ncuts,
                   wsf_transcript *t)
{
    size_t start = 0, c;
    for (c = 0; c <= ncuts; c++) {
        size_t end = c < ncuts ? cuts[c] : n, off = start;
        if (end < start || end > n) continue;
        for (;;) { /* until NONE, even with no byte left: a message may end */
            chi_ws_event ev;
            off += chi_ws_parse(ps, buf + off, end - off, &ev);
            if (ev.kind == CHI_WS_EV_NONE) break;
            if (ev.kind == CHI_WS_EV_ERROR) {
                char e[16];
                snprintf(e, sizeof e, "E%d;", ev.code);
                wsf_put(t, e, strlen(e));
                t->error_at = off;
                return 1;
            }
            if (ev.kind == CHI_WS_EV_DATA) {
                if (t->msg_len + ev.len > t->msg_cap) {
                    t->msg_cap = (t->msg_len + ev.len) * 2 + 16;
                    t->msg = (unsigned char *)realloc(t->msg, t->msg_cap);
                }
                memcpy(t->msg + t->msg_len, ev.data, ev.len);
                t->msg_len += ev.len;
                t->data_events++;
            } else if (ev.kind == CHI_WS_EV_MESSAGE) {
                wsf_put_item(t, ev.opcode == CHI_WS_TEXT ? "T" : "B", t->msg, t->msg_len);
                t->msg_len = 0;
            } else if (ev.kind == CHI_WS_EV_PING) {
                wsf_put_item(t, "ping", ev.data, ev.len);
            } else if (ev.kind == CHI_WS_EV_PONG) {
                wsf_put_item(t, "pong", ev.data, ev.len);
            } else if (ev.kind == CHI_WS_EV_CLOSE) {
                char tag[24];
                snprintf(tag, sizeof tag, "close%d/", ev.code);
                wsf_put_item(t, tag, ev.data, ev.len);
            }
        }
        start = end;
    }
    return 0;
}

static void wsf_free(wsf_transcript *t)
{
    free(t->text);
    free(t->msg);
    memset(t, 0, sizeof *t);
}

#endif
