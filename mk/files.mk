# Files (issue 11): static files, uploads, multipart, the MIME table.
#   make files-test    unit tests (both ways of opening beneath a root) and
#                      the black-box suite against build/files, release and
#                      ASan+UBSan, with the 1 GiB upload and download whose
#                      peak RSS is bounded (256 MiB under ASan); `make test`
#                      runs the same with 256 MiB (64 under ASan) for its time
#   make files-memcheck  the black-box suite against a -O1 -g build under
#                      valgrind memcheck (smaller big-file test)
#   make bench-files   build/files beside nginx (if installed) on a 1 KiB and
#                      a 100 KiB file, keep-alive, one pinned worker each
FILES_BIG_MB ?= 1024

.PHONY: files-test files-memcheck bench-files

build/files-asan: examples/files.c chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $< -o $@ $(LIBS)

build/files-memcheck: examples/files.c chopin.h | build
	$(CC) $(WARN) -Wno-maybe-uninitialized -O1 -g $< -o $@ $(LIBS)

build/files_unit: tests/files_unit.c tests/check.h chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $< -o $@ $(LIBS)

build/files_unit_walk: tests/files_unit.c tests/check.h chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) -DCHOPIN_NO_OPENAT2 $< -o $@ $(LIBS)

files-test: build/files build/files-asan build/rest build/rest-asan build/files_unit build/files_unit_walk
	./build/files_unit
	./build/files_unit_walk
	FILES_BIG_MB=$(FILES_BIG_MB) python3 tests/files_blackbox.py ./build/files --rest ./build/rest
	FILES_BIG_MB=256 ASAN_OPTIONS=detect_leaks=1 python3 tests/files_blackbox.py ./build/files-asan --rest ./build/rest-asan

# (rest too without -march=native: valgrind does not know every instruction it may pick)
build/rest-memcheck: examples/rest.c chopin.h | build
	$(CC) $(WARN) -Wno-maybe-uninitialized -O1 -g $< -o $@ $(LIBS)

files-memcheck: build/files-memcheck build/rest-memcheck
	FILES_BIG_MB=16 FILES_RSS_LIMIT_MB=1024 FILES_VALGRIND=1 python3 tests/files_blackbox.py ./build/files-memcheck --rest ./build/rest-memcheck

bench-files: build/files
	bash bench/files.sh

# the other backends (poll natively, kqueue over the tests' emulation)
build/files-poll: examples/files.c chopin.h | build
	$(CC) $(WARN) $(RELEASE) -DCHOPIN_USE_POLL $< -o $@ $(LIBS)

build/files-kqueue-asan: examples/files.c chopin.h $(KQ_EMU) | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $(KQ_FLAGS) $< $(KQ)/kqueue.c -o $@ $(LIBS)
