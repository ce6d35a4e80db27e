# Sourced by tests/run.sh: the WebSocket suites (issue 13).
# - unit tests of the core's RFC 6455 pieces (ASan+UBSan): SHA-1, base64,
#   handshake checks, UTF-8, close codes, the frame writer and parser;
# (the libFuzzer targets fuzz_ws_frames and fuzz_ws_utf8 run with the
#  others in the hardening suite)
suite "websocket: core unit tests (ASan+UBSan)" \
  bash -c 'make -s build/ws_unit && ./build/ws_unit'
