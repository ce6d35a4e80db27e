# Sourced by tests/run.sh: a stream route's request without a body is an
# empty stream (on_end runs once, status 0), and a refused
# ch_req_body_stream answers 500, never an empty 200 (tests/stream_empty.c,
# in-process, ASan+UBSan, on the epoll, poll and kqueue-emulation backends).
make -s build/stream_empty build/stream_empty-poll build/stream_empty-kqueue >/dev/null
suite "stream_empty: bodyless requests to stream routes (ASan+UBSan, epoll)" timeout 60 ./build/stream_empty
suite "stream_empty: bodyless requests to stream routes (ASan+UBSan, poll)" timeout 60 ./build/stream_empty-poll
suite "stream_empty: bodyless requests to stream routes (ASan+UBSan, kqueue emulation)" timeout 60 ./build/stream_empty-kqueue
