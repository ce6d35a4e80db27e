/* files.c - static files, uploads and forms with chopin.h.

   Environment: PORT, HOST, CHOPIN_WORKERS (as every example), ROOT (the
   directory served, default ./public) and UPLOAD_DIR (where uploads go,
   default ./uploads, created if missing); FILE_CACHE=off turns the
   per-worker open-file cache of /static off (for comparisons).

     GET/HEAD /static/<path>  a file under ROOT: sendfile, ETag/Last-Modified,
                              304, Range/206/416, .br/.gz siblings, no escape
     GET/HEAD /               ROOT/index.html
     POST /upload             multipart/form-data up to 4 GiB, streamed: file
                              parts are written to UPLOAD_DIR as they arrive
                              under generated names; 201
                              {"files":[{"field","filename","bytes","saved"}],
                               "fields":{"name":"value",...}}; malformed: 400
                              {"detail":"<reason>"}
     PUT /raw/:name           the raw body streamed to UPLOAD_DIR/<name> (no
                              '/', no leading '.'); 201 {"bytes":N}. It is
                              written to a new file and renamed over <name>
                              once whole: a failed or abandoned upload leaves
                              the old file as it was; a name held by a
                              directory (or anything but a file) gets 409
     PUT /slow/:name?pause=MS as /raw, but the consumer pauses MS ms after
                              the first piece (CH_BODY_PAUSE, then
                              ch_body_resume from a timer): the server reads
                              nothing from the client meanwhile
     GET/HEAD /later/:name    ROOT/<name> (no '/', no leading '.', no symlink)
                              answered later, from a 1 ms timer: a file on a
                              deferred response gets the same head, validators,
                              ranges and sendfile as /static */
#define CHOPIN_IMPLEMENTATION
#include "../chopin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>

#define MAX_UPLOAD (((uint64_t)4 << 30) + (1 << 20)) /* 4 GiB of files + the multipart framing */
#define MAX_FIELD_BYTES (1 << 20)                     /* all non-file fields together */
#define MAX_PARTS 100000

typedef struct paths {
    char root[1024];
    char uploads[1024];
} paths;

/* One saved file or one field. */
typedef struct item {
    int is_file;
    char *field, *filename; /* NUL-terminated copies */
    char saved[32];
    uint64_t bytes;
    char *value;            /* a field's value */
    size_t value_len, value_cap;
} item;

typedef struct upload {
    const paths *dirs;
    ch_multipart *mp;
    item *items;
    size_t n, cap;
    int fd;                 /* the file part being written, or -1 */
    size_t field_bytes;
    const char *err;        /* our own reason, beside the parser's */
    int err_status;
} upload;

static char *dupn(const char *s, size_t n)
{
    char *d = (char *)malloc(n + 1);
    if (d) {
        if (n) memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

static void upload_free(upload *u, int keep_files)
{
    size_t i;
    if (u->fd >= 0) ch_file_close(u->fd);
    for (i = 0; i < u->n; i++) {
        item *it = &u->items[i];
        if (it->is_file && !keep_files) {
            char path[2100];
            snprintf(path, sizeof path, "%s/%s", u->dirs->uploads, it->saved);
            unlink(path);
        }
        free(it->field);
        free(it->filename);
        free(it->value);
    }
    free(u->items);
    ch_multipart_free(u->mp);
    free(u);
}

static int part_begin(const ch_part *part, void *user)
{
    upload *u = (upload *)user;
    item *it;
    if (u->n == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 16;
        item *a = (item *)realloc(u->items, cap * sizeof *a);
        if (!a) return -1;
        u->items = a;
        u->cap = cap;
    }
    it = &u->items[u->n++];
    memset(it, 0, sizeof *it);
    it->field = dupn(part->name.ptr, part->name.len);
    it->filename = part->has_filename ? dupn(part->filename.ptr, part->filename.len) : NULL;
    if (!it->field || (part->has_filename && !it->filename)) return -1;
    if (part->has_filename) {
        it->is_file = 1;
        u->fd = ch_file_create(u->dirs->uploads, it->saved, sizeof it->saved);
        if (u->fd < 0) {
            u->err = "cannot create the upload file";
            u->err_status = 500;
            return -1;
        }
    }
    return 0;
}

static int part_data(const char *data, size_t len, void *user)
{
    upload *u = (upload *)user;
    item *it = &u->items[u->n - 1];
    if (it->is_file) {
        if (ch_file_write(u->fd, data, len) < 0) {
            u->err = "cannot write the upload file";
            u->err_status = 500;
            return -1;
        }
        it->bytes += len;
        return 0;
    }
    if (len > MAX_FIELD_BYTES - u->field_bytes) {
        u->err = "form fields too large";
        u->err_status = 413;
        return -1;
    }
    if (it->value_len + len + 1 > it->value_cap) {
        size_t cap = it->value_cap ? it->value_cap : 64;
        char *v;
        while (cap < it->value_len + len + 1) cap *= 2;
        if (!(v = (char *)realloc(it->value, cap))) return -1;
        it->value = v;
        it->value_cap = cap;
    }
    memcpy(it->value + it->value_len, data, len);
    it->value_len += len;
    u->field_bytes += len;
    it->bytes += len;
    return 0;
}

static int part_end(void *user)
{
    upload *u = (upload *)user;
    if (u->fd >= 0) {
        ch_file_close(u->fd);
        u->fd = -1;
    }
    return 0;
}

static void detail(ch_res *res, int status, const char *prefix, const char *why)
{
    char msg[256];
    ch_json *j;
    snprintf(msg, sizeof msg, "%s%s", prefix, why);
    j = ch_res_json(res, status);
    ch_json_object_begin(j);
    ch_json_key(j, "detail");
    ch_json_str(j, msg);
    ch_json_object_end(j);
}

static int upload_data(ch_req *req, const char *data, size_t len, void *state)
{
    upload *u = (upload *)state;
    (void)req;
    if (ch_multipart_feed(u->mp, data, len) < 0) return u->err_status ? u->err_status : 400;
    return 0;
}

static void upload_end(ch_req *req, ch_res *res, int status, void *state)
{
    upload *u = (upload *)state;
    ch_json *j;
    size_t i;
    (void)req;
    if (status == CH_BODY_ABORTED) {
        upload_free(u, 0);
        return;
    }
    if (status == 0 && ch_multipart_finish(u->mp) < 0) status = 400;
    if (status) {
        if (u->err) detail(res, u->err_status ? u->err_status : status, "", u->err);
        else if (*ch_multipart_error(u->mp)) detail(res, status, "malformed multipart: ", ch_multipart_error(u->mp));
        /* else: the server's own answer (413 too large, 400 bad framing) stays */
        upload_free(u, 0);
        return;
    }
    j = ch_res_json(res, 201);
    ch_json_object_begin(j);
    ch_json_key(j, "files");
    ch_json_array_begin(j);
    for (i = 0; i < u->n; i++) {
        const item *it = &u->items[i];
        if (!it->is_file) continue;
        ch_json_object_begin(j);
        ch_json_key(j, "field");
        ch_json_str(j, it->field);
        ch_json_key(j, "filename");
        ch_json_str(j, it->filename);
        ch_json_key(j, "bytes");
        ch_json_uint(j, it->bytes);
        ch_json_key(j, "saved");
        ch_json_str(j, it->saved);
        ch_json_object_end(j);
    }
    ch_json_array_end(j);
    ch_json_key(j, "fields");
    ch_json_object_begin(j);
    for (i = 0; i < u->n; i++) {
        const item *it = &u->items[i];
        if (it->is_file) continue;
        ch_json_key(j, it->field);
        ch_json_strn(j, it->value ? it->value : "", it->value_len);
    }
    ch_json_object_end(j);
    ch_json_object_end(j);
    upload_free(u, 1);
}

static void upload_handler(ch_req *req, ch_res *res)
{
    const paths *dirs = (const paths *)req->user;
    ch_multipart_limits lim;
    ch_multipart_cb cb;
    ch_str boundary;
    upload *u;
    if (ch_multipart_boundary(ch_req_common(req, CH_H_CONTENT_TYPE), &boundary) < 0) {
        detail(res, 400, "", "expected multipart/form-data with a boundary");
        return;
    }
    u = (upload *)calloc(1, sizeof *u);
    if (!u) {
        ch_res_error(res, 503);
        return;
    }
    u->dirs = dirs;
    u->fd = -1;
    memset(&lim, 0, sizeof lim);
    lim.max_parts = MAX_PARTS;
    lim.max_total = MAX_UPLOAD;
    memset(&cb, 0, sizeof cb);
    cb.part_begin = part_begin;
    cb.part_data = part_data;
    cb.part_end = part_end;
    cb.user = u;
    u->mp = ch_multipart_new(boundary.ptr, boundary.len, &lim, &cb);
    if (!u->mp) {
        free(u);
        detail(res, 400, "", "bad multipart boundary");
        return;
    }
    ch_req_body_stream(res, upload_data, upload_end, u);
}

/* PUT /raw/:name */
typedef struct raw {
    int fd;
    uint64_t bytes;
    char path[2100];        /* UPLOAD_DIR/<name>, replaced once the body is whole */
    char tmp[2100];         /* UPLOAD_DIR/up-<16 hex>, written meanwhile */
    long pause_ms;          /* PUT /slow: pause once, after the first piece */
    ch_body body;           /* the handle to resume it */
    ch_timer timer;
} raw;

static void raw_resume(ch_worker *w, void *user)
{
    raw *r = (raw *)user;
    (void)w;
    r->timer = 0;
    ch_body_resume(r->body);
}

static int raw_data(ch_req *req, const char *data, size_t len, void *state)
{
    raw *r = (raw *)state;
    (void)req;
    if (ch_file_write(r->fd, data, len) < 0) return 500;
    r->bytes += len;
    if (r->pause_ms > 0) { /* busy for a while: no more bytes until the timer */
        r->timer = ch_timer_start(r->body.w, (uint64_t)r->pause_ms, 0, raw_resume, r);
        r->pause_ms = 0;
        if (r->timer) return CH_BODY_PAUSE;
    }
    return 0;
}

static void raw_end(ch_req *req, ch_res *res, int status, void *state)
{
    raw *r = (raw *)state;
    (void)req;
    if (r->timer) ch_timer_stop(r->body.w, r->timer); /* the client left while paused */
    ch_file_close(r->fd);
    if (status == 0 && rename(r->tmp, r->path) < 0) {
        unlink(r->tmp);
        detail(res, 500, "", "cannot rename the upload into place");
    } else if (status == 0) {
        ch_json *j = ch_res_json(res, 201);
        ch_json_object_begin(j);
        ch_json_key(j, "bytes");
        ch_json_uint(j, r->bytes);
        ch_json_object_end(j);
    } else {
        unlink(r->tmp); /* a partial upload is not kept; the old file stays */
    }
    free(r);
}

static void raw_handler(ch_req *req, ch_res *res)
{
    const paths *dirs = (const paths *)req->user;
    ch_str enc = ch_req_param(req, "name");
    char name[256], tmp[24];
    long n = ch_url_decode(enc.ptr, enc.len, name, sizeof name, 0);
    long i;
    raw *r;
    if (n <= 0 || name[0] == '.' || strchr(name, '/') || strchr(name, '\\') || memchr(name, 0, (size_t)n)) {
        detail(res, 400, "", "bad file name: no '/', no leading '.'");
        return;
    }
    for (i = 0; i < n; i++) /* as ch_file_create_named: no control byte */
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f) {
            detail(res, 400, "", "bad file name: a control byte");
            return;
        }
    r = (raw *)calloc(1, sizeof *r);
    if (!r) {
        ch_res_error(res, 503);
        return;
    }
    snprintf(r->path, sizeof r->path, "%s/%s", dirs->uploads, name);
    {
        /* said before the body comes, not after it (the rename would fail);
           lstat: a link is replaced by the rename, not followed */
        struct stat st;
        if (lstat(r->path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
            free(r);
            detail(res, 409, "", "that name is not a file (a directory?)");
            return;
        }
    }
    r->fd = ch_file_create(dirs->uploads, tmp, sizeof tmp);
    if (r->fd < 0) {
        free(r);
        detail(res, 400, "", "cannot create that file");
        return;
    }
    snprintf(r->tmp, sizeof r->tmp, "%s/%s", dirs->uploads, tmp);
    if (req->path.len > 6 && memcmp(req->path.ptr, "/slow/", 6) == 0) {
        char ms[16];
        if (ch_req_query(req, "pause", ms, sizeof ms) > 0) r->pause_ms = atol(ms);
        r->body = ch_req_body_handle(res);
    }
    ch_req_body_stream(res, raw_data, raw_end, r);
}

/* GET /later/:name: the handler defers; the timer answers with the file.
   ch_res_file_fd(NULL, ...) takes the request's conditional and Range
   headers from what ch_res_defer kept. */
typedef struct later_file {
    char path[2100], name[256];
} later_file;

static void later_fire(ch_defer d, void *user)
{
    later_file *lf = (later_file *)user;
    int fd = open(lf->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC); /* a symlink is refused */
    if (fd < 0)
        ch_res_error(ch_defer_res(d), 404);
    else
        ch_res_file_fd(NULL, ch_defer_res(d), fd, lf->name);
    ch_defer_finish(d);
    free(lf);
}

static void later_handler(ch_req *req, ch_res *res)
{
    const paths *dirs = (const paths *)req->user;
    ch_str enc = ch_req_param(req, "name");
    later_file *lf = (later_file *)calloc(1, sizeof *lf);
    long n;
    ch_defer d;
    if (!lf) {
        ch_res_error(res, 503);
        return;
    }
    n = ch_url_decode(enc.ptr, enc.len, lf->name, sizeof lf->name, 0);
    if (n <= 0 || lf->name[0] == '.' || strchr(lf->name, '/') || strchr(lf->name, '\\') || memchr(lf->name, 0, (size_t)n)) {
        free(lf);
        ch_res_error(res, 404);
        return;
    }
    snprintf(lf->path, sizeof lf->path, "%s/%s", dirs->root, lf->name);
    d = ch_res_defer(res);
    if (!ch_defer_after(d, 1, later_fire, lf)) {
        free(lf);
        ch_res_error(ch_defer_res(d), 503);
        ch_defer_finish(d);
    }
}

static void index_handler(ch_req *req, ch_res *res)
{
    const paths *dirs = (const paths *)req->user;
    char path[1100];
    snprintf(path, sizeof path, "%s/index.html", dirs->root);
    ch_res_file(req, res, path);
}

static void env_or(char *out, size_t cap, const char *name, const char *def)
{
    const char *v = getenv(name);
    snprintf(out, cap, "%s", v && *v ? v : def);
}

int main(void)
{
    static paths dirs;
    ch_app *app = ch_app_new();
    char probe[32];
    int fd;
    if (!app) return 1;
    env_or(dirs.root, sizeof dirs.root, "ROOT", "./public");
    env_or(dirs.uploads, sizeof dirs.uploads, "UPLOAD_DIR", "./uploads");
    /* creates UPLOAD_DIR if missing, and checks that it takes files */
    fd = ch_file_create(dirs.uploads, probe, sizeof probe);
    if (fd < 0) {
        fprintf(stderr, "files: cannot write in UPLOAD_DIR %s\n", dirs.uploads);
        return 1;
    }
    ch_file_close(fd);
    {
        char path[1100];
        snprintf(path, sizeof path, "%s/%s", dirs.uploads, probe);
        unlink(path);
    }
    {
        ch_static_opts so;
        const char *fc = getenv("FILE_CACHE");
        memset(&so, 0, sizeof so);
        so.file_cache = fc && strcmp(fc, "off") == 0 ? CH_NO : 0;
        ch_static(app, "/static", dirs.root, &so);
    }
    ch_get(app, "/", index_handler, &dirs);
    ch_route(app, CH_HEAD, "/", index_handler, &dirs);
    ch_route_stream(app, CH_POST, "/upload", upload_handler, &dirs, MAX_UPLOAD);
    ch_route_stream(app, CH_PUT, "/raw/:name", raw_handler, &dirs, MAX_UPLOAD);
    ch_route_stream(app, CH_PUT, "/slow/:name", raw_handler, &dirs, MAX_UPLOAD);
    ch_get(app, "/later/:name", later_handler, &dirs);
    ch_route(app, CH_HEAD, "/later/:name", later_handler, &dirs);
    if (ch_run(app, NULL) != 0) {
        fprintf(stderr, "files: %s\n", ch_error(app));
        ch_app_free(app);
        return 1;
    }
    ch_app_free(app);
    return 0;
}
