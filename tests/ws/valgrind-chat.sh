#!/bin/sh
# build/chat-memcheck under valgrind memcheck, for ws_blackbox (which runs a
# server binary without arguments): any error or leak makes it exit 99.
cd "$(dirname "$0")/../.." || exit 1
exec valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
  --show-leak-kinds=definite,indirect ./build/chat-memcheck
