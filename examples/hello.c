/* hello.c - the shortest complete chopin.h program (the one in the README).
   Build: cc -O2 hello.c -o hello -pthread      Run: ./hello, then
   curl localhost:3000/hello/world */
#define CHOPIN_IMPLEMENTATION
#include "../chopin.h"

#include <stdio.h>

static void hello(ch_req *req, ch_res *res)
{
    ch_str name = ch_req_param(req, "name");
    ch_json *j = ch_res_json(res, 200);
    ch_json_object_begin(j);
    ch_json_key(j, "hello");
    ch_json_strn(j, name.ptr, name.len);
    ch_json_object_end(j);
}

int main(void)
{
    ch_app *app = ch_app_new();
    ch_fast_text(app, "/plaintext", "Hello, World!"); /* pre-built response */
    ch_get(app, "/hello/:name", hello, NULL);          /* router + JSON writer */
    if (ch_run(app, NULL) != 0) {
        fprintf(stderr, "hello: %s\n", ch_error(app));
        return 1;
    }
    ch_app_free(app);
    return 0;
}
