# WebSocket (issue 13): RFC 6455 in the core (>>sha1, >>base64,
# >>websocket frames) and the server (>>websocket), examples/chat.c.
#   make ws-unit      unit tests of the core pieces (ASan+UBSan)
#   make ws-test      every WebSocket suite (what tests/suites/ws.sh runs)
build/ws_unit: tests/ws/unit_ws.c tests/ws/ws_frames.h chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $< -o $@ $(LIBS)

.PHONY: ws-unit
ws-unit: build/ws_unit
	./build/ws_unit

build/ws_blackbox: tests/ws/ws_blackbox.c | build
	$(CC) $(WARN) -D_GNU_SOURCE -O1 -g $< -o $@ $(LIBS)

# The Node.js `ws` package, installed under build/ by the test scripts.
build/node/node_modules/ws/package.json:
	@bash tests/ws/need-node-ws.sh build/node
