# Sourced by tests/run.sh: the files suites (issue 11).
# - unit tests of the MIME table, path guards, validators, conditionals,
#   ranges, the multipart parser (split at every byte) and opening beneath a
#   root, with openat2 and with the per-segment walk (CHOPIN_NO_OPENAT2);
# - the black-box suite against examples/files.c (build/files), release
#   and ASan+UBSan, with a 256 MiB upload and download (64 MiB under ASan,
#   16 on the other backends; FILES_BIG_MB sets the release size) and the
#   server's peak RSS reported. The 1 GiB runs are `make files-test` (and
#   FILES_BIG_MB=1024 here), kept out of `make test` for its time.
# The fuzz targets fuzz_multipart, fuzz_paths and fuzz_ranges run with the others.
if ! command -v python3 >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq python3 >/dev/null 2>&1
  fi
fi
# every build first, two at a time (MAKEFLAGS); a failed one shows again,
# with its errors, in its suite below
make -s -k build/files_unit build/files_unit_walk build/files build/rest build/files-asan build/rest-asan \
  build/files-poll build/files-kqueue-asan >/dev/null || true
suite "files: unit tests (ASan+UBSan), openat2" \
  bash -c 'make -s build/files_unit && ./build/files_unit'
suite "files: unit tests (ASan+UBSan), per-segment walk" \
  bash -c 'make -s build/files_unit_walk && ./build/files_unit_walk'
if command -v python3 >/dev/null; then
  # two at a time, side by side: each mostly waits (the open-file cache's
  # 1.1 s revalidation waits, a paused upload, servers starting)
  suite_beside "files: black-box, ASan+UBSan build" \
    bash -c 'make -s build/files-asan build/rest-asan &&
             FILES_BIG_MB=64 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 python3 tests/files_blackbox.py ./build/files-asan --rest ./build/rest-asan'
  suite "files: black-box, release build (examples/files.c)" \
    bash -c 'make -s build/files build/rest && FILES_BIG_MB=${FILES_BIG_MB:-256} python3 tests/files_blackbox.py ./build/files --rest ./build/rest'
  suites_beside_done
  suite_beside "files: black-box, kqueue backend over the epoll emulation, ASan+UBSan build" \
    bash -c 'make -s build/files-kqueue-asan && FILES_BIG_MB=16 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 python3 tests/files_blackbox.py ./build/files-kqueue-asan'
  suite "files: black-box, poll backend, release build" \
    bash -c 'make -s build/files-poll && FILES_BIG_MB=16 python3 tests/files_blackbox.py ./build/files-poll'
  suites_beside_done
else
  suite "files: black-box" bash -c 'echo "python3 is missing (needed by this suite); run as root to install it"; echo "0 passed, 1 failed"'
fi
