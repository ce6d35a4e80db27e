#!/usr/bin/env python3
"""Builds the seed corpus in tests/fuzz/corpus/<target>/ from the test vectors
of tests/unit.c (and the request tables of tests/blackbox.c): every C string
literal (adjacent literals joined) in the named test functions becomes a seed,
with the control bytes each target reads first. Run it again after the unit
tests grow:  python3 tests/fuzz/make_corpus.py"""
import hashlib, os, re, sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, 'tests', 'fuzz', 'corpus')
MACROS = {  # the few macros of tests/blackbox.c that requests are built from
    'HOST': '"Host: localhost\\r\\n"',
    'GET_PLAINTEXT': '"GET /plaintext HTTP/1.1\\r\\n" "Host: localhost\\r\\n" "\\r\\n"',
    'GET_JSON': '"GET /json HTTP/1.1\\r\\n" "Host: localhost\\r\\n" "\\r\\n"',
    'POST_ECHO': '"POST /echo HTTP/1.1\\r\\n" "Host: localhost\\r\\n"',
}
LITERALS = re.compile(r'"(?:[^"\\\n]|\\.)*"(?:\s*(?:"(?:[^"\\\n]|\\.)*"|\b(?:HOST|GET_PLAINTEXT|GET_JSON|POST_ECHO)\b))*')


def c_unescape(body):
    out, i = bytearray(), 0
    simple = {'n': 10, 'r': 13, 't': 9, '0': 0, '\\': 92, '"': 34, "'": 39, 'a': 7, 'b': 8, 'f': 12, 'v': 11}
    while i < len(body):
        c = body[i]
        if c != '\\':
            out += c.encode('latin-1')
            i += 1
            continue
        e = body[i + 1]
        if e == 'x':
            j = i + 2
            while j < len(body) and body[j] in '0123456789abcdefABCDEF':
                j += 1
            out.append(int(body[i + 2:j], 16) & 0xFF)
            i = j
        elif e in '01234567' and e != '0' or (e == '0' and i + 2 < len(body) and body[i + 2] in '01234567'):
            j = i + 1
            while j < len(body) and j < i + 4 and body[j] in '01234567':
                j += 1
            out.append(int(body[i + 1:j], 8) & 0xFF)
            i = j
        else:
            out.append(simple[e])
            i += 2
    return bytes(out)


def literals(text):
    for m in LITERALS.finditer(text):
        chunk = m.group(0)
        for name, value in MACROS.items():
            chunk = re.sub(r'\b%s\b' % name, value, chunk)
        parts = re.findall(r'"((?:[^"\\\n]|\\.)*)"', chunk)
        yield b''.join(c_unescape(p) for p in parts)


def functions(path, names):
    """The text of each C function whose name starts with one of names."""
    text = open(path, encoding='latin-1').read()
    for m in re.finditer(r'^static [^\n]*?\b(\w+)\([^)]*\)\n\{', text, re.M):
        if any(m.group(1).startswith(n) for n in names):
            end = text.find('\n}\n', m.end())
            yield text[m.end():end]


def save(target, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()[:16]), 'wb') as f:
        f.write(data)


def main():
    unit = os.path.join(ROOT, 'tests', 'unit.c')
    blackbox = os.path.join(ROOT, 'tests', 'blackbox.c')
    requests = set()
    for body in functions(unit, ['test_parse_']):
        requests.update(l for l in literals(body) if b'HTTP/' in l)
    bb = open(blackbox, encoding='latin-1').read()
    for l in literals(bb):
        if b'HTTP/1.' in l and len(l) < 4000:
            requests.add(l)
    for r in sorted(requests):
        for limits in (0, 2):
            save('fuzz_parser', bytes([limits]) + r)
        save('fuzz_conn', bytes([5]) + r)
        save('fuzz_conn', bytes([0x85]) + r)  # and shut the write side after it
    pipeline = b''.join(sorted(r for r in requests if r.startswith((b'GET /plaintext', b'POST /echo')))[:16])
    save('fuzz_conn', bytes([17]) + pipeline)
    for body in functions(unit, ['test_chunked_']):
        for l in literals(body):
            if re.match(rb'^[0-9a-fA-F\r\n -]', l) and len(l) > 1:
                save('fuzz_chunked', b'\x00\x07' + l)
                save('fuzz_chunked', b'\x01\x03' + l)
    for body in functions(unit, ['test_json_escaping', 'test_json_structure', 'test_json_round']):
        for l in literals(body):
            save('fuzz_json_writer', b'\x01' + l)
    save('fuzz_json_writer', bytes([0, 0, 4, 1, 0x61, 5, 2, 0x62, 0x63, 1, 6, 1, 2, 3, 4, 5, 6, 7, 8, 7, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 8, 1, 9, 3, 2]))
    for body in functions(unit, ['test_json_reader', 'test_json_round']):
        for l in literals(body):
            if l[:1] in b'{["-0123456789tfn \t\r\n':
                save('fuzz_json_reader', b'\x20' + l)
    for body in functions(unit, ['test_url_decode', 'test_query', 'test_cookies']):
        for l in literals(body):
            save('fuzz_url_query', b'\x01\x01q' + l)
            save('fuzz_url_query', b'\x20\x04name' + l)
    # the router reads choices, not text: a few byte strings that register
    # static, parameter and wildcard routes and match paths among them
    for seed in (b'\x05\x02\x04\x05\x00\x01\x02\x04\x00\x07\x01\x02\x00\x00\x06\x04\x01\x02\x05\x01\x00\x03\x02\x04\x00\x01\x02\x09\x00',
                 b'\x09\x01\x00\x00\x01\x01\x01\x01\x02\x00\x02\x03\x00\x05\x07\x01\x00\x03\x06\x00\x01\x04\x00\x05\x02\x01\x02\x00\x04\x01\x05\x08\x02',
                 b'\x03\x03\x04\x05\x00\x01\x00\x02\x04\x05\x02\x02\x00\x03\x04\x00\x07\x00\x01\x04\x06\x00\x04\x03\x05\x03\x04\x00\x0b\x61\x2f\x3a\x25\x41\x2f\x2f\x62\x2e\x2e\x2f'):
        save('fuzz_router', seed)
    for t in sorted(os.listdir(OUT)):
        print('%-18s %d seeds' % (t, len(os.listdir(os.path.join(OUT, t)))))


if __name__ == '__main__':
    sys.exit(main())
