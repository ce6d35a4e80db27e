/* chat.c - WebSocket with chopin.h: an echo endpoint and chat rooms whose
   messages reach every member on every worker (publish/subscribe).

       cc -O2 examples/chat.c -o build/chat -pthread
       PORT=3000 CHOPIN_WORKERS=2 ./build/chat

   GET /ws/echo           a WebSocket that echoes every message with its type
                          (text stays text, binary stays binary); 16 MiB limit
   GET /ws/chat?room=R    a WebSocket in room R (default "lobby"): every text
                          message a member sends reaches every member of R,
                          the sender included, on whichever worker it is
   GET /                  a small chat page (plain JavaScript) to try it
   POST /rooms/R          (text body) 204, and the body is published to room R

   Reads PORT, HOST and CHOPIN_WORKERS like every example. */
#define CHOPIN_IMPLEMENTATION
#include "../chopin.h"

#include <stdio.h>
#include <string.h>

#define ROOM_MAX 64
#define TOPIC_PREFIX "room:"

/* The page: a room field, a message field and the log. It connects to
   /ws/chat?room=... on the same host. ?room=NAME in the page's own address
   fills the room field. */
/* page begin */
static const char page[] =
    "<!doctype html>\n"
    "<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>chopin.h chat</title>\n"
    "<style>body{font:16px system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em}\n"
    "#log{list-style:none;padding:0;border:1px solid #ccc;min-height:12em;max-height:60vh;overflow:auto}\n"
    "#log li{padding:.2em .5em;border-bottom:1px solid #eee}#status{color:#666}</style>\n"
    "</head><body>\n"
    "<h1>chopin.h chat</h1>\n"
    "<p><label>Room <input id=\"room\" value=\"lobby\"></label> <button id=\"join\">Join</button>\n"
    " <span id=\"status\">not connected</span></p>\n"
    "<ul id=\"log\"></ul>\n"
    "<form id=\"form\"><input id=\"text\" autocomplete=\"off\" placeholder=\"Say something\" size=\"40\">\n"
    " <button id=\"send\">Send</button></form>\n"
    "<script>\n"
    "'use strict';\n"
    "let ws = null;\n"
    "const $ = (id) => document.getElementById(id);\n"
    "const params = new URLSearchParams(location.search);\n"
    "if (params.get('room')) $('room').value = params.get('room');\n"
    "function show(text, cls) {\n"
    "  const li = document.createElement('li');\n"
    "  li.textContent = text;\n"
    "  if (cls) li.className = cls;\n"
    "  $('log').appendChild(li);\n"
    "  $('log').scrollTop = $('log').scrollHeight;\n"
    "}\n"
    "function join() {\n"
    "  if (ws) ws.close(1000, 'leaving');\n"
    "  const room = $('room').value || 'lobby';\n"
    "  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';\n"
    "  const sock = new WebSocket(proto + '//' + location.host + '/ws/chat?room=' + encodeURIComponent(room));\n"
    "  ws = sock;\n"
    "  $('status').textContent = 'connecting';\n"
    "  sock.onopen = () => { if (ws === sock) $('status').textContent = 'connected'; };\n"
    "  sock.onmessage = (e) => show(e.data, 'message');\n"
    "  sock.onclose = (e) => { if (ws === sock) { $('status').textContent = 'closed (' + e.code + ')'; ws = null; } };\n"
    "}\n"
    "$('join').onclick = join;\n"
    "$('form').onsubmit = (e) => {\n"
    "  e.preventDefault();\n"
    "  if (ws && ws.readyState === WebSocket.OPEN && $('text').value) ws.send($('text').value);\n"
    "  $('text').value = '';\n"
    "};\n"
    "join();\n"
    "</script>\n"
    "</body></html>\n";
/* page end */

static void home(ch_req *req, ch_res *res)
{
    (void)req;
    ch_res_send(res, 200, "text/html; charset=utf-8", page, sizeof page - 1);
}

/* ---- /ws/echo ---- */

static void echo_message(ch_ws *ws, ch_ws_type type, const char *data, size_t len)
{
    ch_ws_send(ws, type, data, len);
}

/* ---- /ws/chat ---- */

/* "room:" + the room from the query, or -1 when it is too long or bad. */
static long room_topic(const ch_req *req, char *topic, size_t cap)
{
    long n;
    memcpy(topic, TOPIC_PREFIX, sizeof TOPIC_PREFIX - 1);
    n = ch_req_query(req, "room", topic + sizeof TOPIC_PREFIX - 1, cap - (sizeof TOPIC_PREFIX - 1));
    if (n == CH_ABSENT || n == 0) {
        strcpy(topic + sizeof TOPIC_PREFIX - 1, "lobby");
        n = 5;
    }
    return n < 0 ? -1 : n + (long)(sizeof TOPIC_PREFIX - 1);
}

static void chat_open(ch_ws *ws, ch_req *req)
{
    char topic[sizeof TOPIC_PREFIX + ROOM_MAX + 1];
    if (room_topic(req, topic, sizeof topic) < 0) {
        ch_ws_close(ws, 1008, "bad room name");
        return;
    }
    ch_ws_subscribe(ws, topic);
    ch_ws_set_user(ws, NULL);
}

/* Every text message goes to the room: ch_ws_publish frames it once and
   hands it to every worker; each queues it to its members. The topics
   this connection is in are its own: read it back from the first one. */
static void chat_message(ch_ws *ws, ch_ws_type type, const char *data, size_t len)
{
    const char *topic = ch_ws_topic(ws, 0);
    if (type != CH_WS_TEXT || !topic) return;
    ch_ws_publish(ch_ws_app(ws), topic, CH_WS_TEXT, data, len);
}

/* ---- POST /rooms/:name ---- */

static void post_room(ch_req *req, ch_res *res)
{
    char topic[sizeof TOPIC_PREFIX + ROOM_MAX + 1];
    ch_str name = ch_req_param(req, "name");
    long n;
    memcpy(topic, TOPIC_PREFIX, sizeof TOPIC_PREFIX - 1);
    n = ch_url_decode(name.ptr, name.len, topic + sizeof TOPIC_PREFIX - 1, sizeof topic - (sizeof TOPIC_PREFIX - 1), 0);
    if (n <= 0) {
        ch_res_error(res, 400);
        return;
    }
    if (ch_ws_publish(ch_worker_app(ch_res_worker(res)), topic, CH_WS_TEXT, req->body, req->body_len) < 0) {
        ch_res_error(res, 400); /* not UTF-8 text */
        return;
    }
    ch_res_status(res, 204);
}

int main(void)
{
    ch_app *app = ch_app_new();
    ch_ws_opts echo, chat;
    int rc;
    memset(&echo, 0, sizeof echo);
    echo.on_message = echo_message;
    echo.max_message = 16u << 20;
    memset(&chat, 0, sizeof chat);
    chat.on_open = chat_open;
    chat.on_message = chat_message;
    ch_get(app, "/", home, NULL);
    ch_ws_route(app, "/ws/echo", &echo);
    ch_ws_route(app, "/ws/chat", &chat);
    ch_post(app, "/rooms/:name", post_room, NULL);
    rc = ch_run(app, NULL);
    if (rc != 0) fprintf(stderr, "chat: %s\n", ch_error(app));
    ch_app_free(app);
    return rc == 0 ? 0 : 1;
}
