#!/usr/bin/env python3
"""Writes the committed seeds of the `contract` and `store_record` fuzz targets.

Run from anywhere: python3 fuzz/seeds/make_seeds.py. Each contract seed is one choice
byte (which check of fuzz_targets/contract.rs: contract index * 3 + encoding index, with
kitchen, tree, choice and binary, json, single-object; 9 is single-object with any
contract) followed by a valid payload, encoded here by hand after the Avro
specification. The seeds for `headers` and `seawall_headers` are `arbitrary` inputs that
libFuzzer found; they are not made here.
"""

import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = os.path.join(HERE, "..", "schemas")

# --- Avro binary -------------------------------------------------------------------

def long(n):
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)

def string(s):
    raw = s.encode() if isinstance(s, str) else s
    return long(len(raw)) + raw

def array(items):
    if not items:
        return long(0)
    return long(len(items)) + b"".join(items) + long(0)

def kitchen():
    return b"".join([
        string("order-1"), long(42), long(-7), struct.pack("<d", 9.5), struct.pack("<f", 0.25),
        b"\x01", string(b"\x00\xff"),
        array([string("a"), string("b")]),
        array([string("eur") + long(100)]),
        array([array([long(1), long(2)]), array([])]),
        long(1), b"ABCD", string(b"\x04\xd2"),  # 12.34
        long(1_700_000_000_000), long(19_000),
        string("123e4567-e89b-12d3-a456-426614174000"),
        long(1) + string("fragile"), string("USD"),
    ])

def node(label, children=(), attributes=(), nxt=None):
    return b"".join([
        string(label), array(list(children)),
        array([string(k) + v for k, v in attributes]),
        long(0) if nxt is None else long(1) + nxt,
    ])

def tree():
    leaf = node("leaf")
    return node("root", [leaf, node("mid", [leaf])], [("x", leaf)], node("sibling"))

def choice(branch, value, when=None):
    tail = long(1) if when is None else long(0) + long(when)
    return long(branch) + value + tail

CHOICES = [
    choice(0, b""), choice(2, long(-99), 5), choice(4, string("text")),
    choice(6, long(3) + long(-4)), choice(9, array([long(0), long(1) + long(7)])),
    choice(10, array([string("k") + long(1) + string("v")])),
]

# --- JSON --------------------------------------------------------------------------

KITCHEN_JSON = {
    "id": "order-1", "count": 42, "small": -7, "ratio": 9.5, "share": 0.25, "flag": True,
    "blob": "AP8=", "tags": ["a", "b"], "totals": {"eur": 100}, "grid": [[1, 2], []],
    "status": "PAID", "code": "QUJDRA==", "amount": "12.34", "at": 1700000000000,
    "day": 19000, "ref": "123e4567-e89b-12d3-a456-426614174000", "note": "fragile",
}
TREE_JSON = {"label": "root", "children": [{"label": "leaf", "children": [], "attributes": {}}],
             "attributes": {}, "next": {"label": "sibling", "children": [], "attributes": {}}}
CHOICE_JSON = [{"pick": None, "when": None}, {"pick": {"fuzz.Point": {"x": 1, "y": 2}}, "when": 5},
               {"pick": "RED", "when": None}, {"pick": [None, 3], "when": 7}]

# --- Single-object: CRC-64-AVRO of the parsing canonical form -----------------------

EMPTY = 0xC15D213AA4D7A795

def fp_table():
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
        table.append(fp)
    return table

TABLE = fp_table()

def rabin(data):
    fp = EMPTY
    for b in data:
        fp = (fp >> 8) ^ TABLE[(fp ^ b) & 0xFF]
    return fp

PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}

def canonical(schema, namespace, seen):
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return json.dumps(schema)
        name = schema if "." in schema else f"{namespace}.{schema}"
        return json.dumps(name)
    if isinstance(schema, list):
        return "[" + ",".join(canonical(s, namespace, seen) for s in schema) + "]"
    kind = schema["type"]
    if kind in ("record", "enum", "fixed"):
        ns = schema.get("namespace", namespace)
        name = schema["name"] if "." in schema["name"] else f"{ns}.{schema['name']}"
        if name in seen:
            return json.dumps(name)
        seen.add(name)
        parts = [f'"name":{json.dumps(name)}', f'"type":"{kind}"']
        if kind == "record":
            ns = name.rsplit(".", 1)[0]
            fields = ",".join(
                '{"name":%s,"type":%s}' % (json.dumps(f["name"]), canonical(f["type"], ns, seen))
                for f in schema["fields"])
            parts.append(f'"fields":[{fields}]')
        elif kind == "enum":
            parts.append('"symbols":' + json.dumps(schema["symbols"], separators=(",", ":")))
        else:
            parts.append(f'"size":{schema["size"]}')
        return "{" + ",".join(parts) + "}"
    if kind == "array":
        return '{"type":"array","items":%s}' % canonical(schema["items"], namespace, seen)
    if kind == "map":
        return '{"type":"map","values":%s}' % canonical(schema["values"], namespace, seen)
    # A primitive with a logical type. apache-avro (whose fingerprint the registry uses)
    # keeps it an object and keeps precision and scale, unlike the specification's
    # canonical form, which reduces it to the bare primitive.
    parts = [f'"type":"{kind}"'] + [f'"{k}":{schema[k]}' for k in ("precision", "scale") if k in schema]
    return "{" + ",".join(parts) + "}"

def fingerprint(stem):
    with open(os.path.join(SCHEMAS, stem + ".avsc")) as f:
        schema = json.load(f)
    return rabin(canonical(schema, "", set()).encode())

def single_object(stem, datum):
    return b"\xc3\x01" + struct.pack("<Q", fingerprint(stem)) + datum

# --- Store records -------------------------------------------------------------------

STORE = {
    "processed": b"p" + struct.pack(">Q", 1_700_000_000_123),
    "dead-lettered": b"d" + struct.pack(">Q", 1_700_000_000_456),
    "crashed": b"c" + struct.pack(">IQ", 3, 1_700_000_000_789),
    "parked": struct.pack(">Q", 1_700_000_001_000) + b"order-7",
}

def write(target, name, data):
    folder = os.path.join(HERE, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)

def main():
    binary = {"kitchen": [kitchen()], "tree": [tree()], "choice": CHOICES}
    documents = {"kitchen": [KITCHEN_JSON], "tree": [TREE_JSON], "choice": CHOICE_JSON}
    for index, stem in enumerate(["kitchen", "tree", "choice"]):
        for n, datum in enumerate(binary[stem]):
            write("contract", f"{stem}-binary-{n}", bytes([index * 3]) + datum)
            if n < 2:
                write("contract", f"{stem}-single-object-{n}",
                      bytes([index * 3 + 2]) + single_object(stem, datum))
        for n, doc in enumerate(documents[stem]):
            text = json.dumps(doc, separators=(",", ":")).encode()
            write("contract", f"{stem}-json-{n}", bytes([index * 3 + 1]) + text)
    write("contract", "any-single-object", bytes([9]) + single_object("tree", tree()))
    for name, data in STORE.items():
        write("store_record", name, data)

if __name__ == "__main__":
    main()
