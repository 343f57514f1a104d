#!/usr/bin/env python3
"""Generates the AMQP 0-9-1 method and property codecs of Sluice from methods.def.

Python 3 standard library only. Three commands:

  amqp_gen.py generate --def methods.def --out-dir DIR
      Writes DIR/methods.h and DIR/methods.cc (run by CMake at build time).

  amqp_gen.py check-xml --def methods.def --xml amqp0-9-1.xml
      Compares the definition file with an AMQP spec XML (e.g. Debian's amqp-specs package):
      class and method ids, argument names and types, reserved arguments, content flags and
      synchronous request/response pairs. Exits 77 (ctest's "skipped") when the XML is absent,
      1 if CI=true (in CI a check that skips checks nothing).

  amqp_gen.py emit-def --xml amqp0-9-1.xml
      Prints a definition file derived from a spec XML; a starting point when adding classes.

The definition file format is described in net/amqp/PROTOCOL.md ("Definition file").
"""

import argparse
import os
import re
import sys

TYPES = {
    # def type: (C++ type, default initializer)
    "octet": ("uint8_t", "0"),
    "short": ("uint16_t", "0"),
    "long": ("uint32_t", "0"),
    "longlong": ("uint64_t", "0"),
    "bit": ("bool", "false"),
    "shortstr": ("std::string", None),
    "longstr": ("std::string", None),
    "timestamp": ("uint64_t", "0"),
    "table": ("FieldTable", None),
}

SENDERS = {"client": "kClient", "server": "kServer", "both": "kBoth"}

CPP_KEYWORDS = {
    "alignas", "alignof", "and", "asm", "auto", "bool", "break", "case", "catch", "char",
    "class", "const", "continue", "default", "delete", "do", "double", "else", "enum",
    "explicit", "export", "extern", "false", "float", "for", "friend", "goto", "if", "inline",
    "int", "long", "mutable", "namespace", "new", "not", "operator", "or", "private",
    "protected", "public", "register", "return", "short", "signed", "sizeof", "static",
    "struct", "switch", "template", "this", "throw", "true", "try", "typedef", "typename",
    "union", "unsigned", "using", "virtual", "void", "volatile", "while", "xor",
}


class DefError(Exception):
    pass


class Field:
    def __init__(self, name, type_, reserved=False, default=None, secret=False, line=0):
        self.name = name
        self.type = type_
        self.reserved = reserved
        self.default = default
        self.secret = secret
        self.line = line

    @property
    def cpp_name(self):
        n = self.name.replace("-", "_")
        return n + "_" if n in CPP_KEYWORDS else n


class Method:
    def __init__(self, cls, name, index, line):
        self.cls = cls
        self.name = name
        self.index = index
        self.synchronous = False
        self.content = False
        self.replies = []
        self.sender = None
        self.rabbitmq = False
        self.fields = []
        self.line = line

    @property
    def full_name(self):
        return "%s.%s" % (self.cls.name, self.name)

    @property
    def struct(self):
        return camel(self.cls.name) + camel(self.name)


class Class:
    def __init__(self, name, index, line):
        self.name = name
        self.index = index
        self.methods = []
        self.properties = None  # list of Field, or None when the class carries no content
        self.line = line


def camel(name):
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[-_]", name))


def parse_def(path):
    """Parses the definition file into a list of Class objects (in file order)."""
    classes = []
    by_name = {}
    current = None  # the Method or ("properties", Class) that indented lines belong to
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            text = raw.split("#", 1)[0].rstrip()
            if not text.strip():
                continue
            words = text.split()
            indented = words[0] not in ("class", "method", "properties")

            def fail(msg):
                raise DefError("%s:%d: %s" % (path, lineno, msg))

            if indented:
                if current is None:
                    fail("field outside a method or properties block")
                if len(words) < 2:
                    fail("field needs a name and a type")
                name, type_ = words[0], words[1]
                if type_ not in TYPES:
                    fail("unknown type %r" % type_)
                field = Field(name, type_, line=lineno)
                for w in words[2:]:
                    if w == "reserved":
                        field.reserved = True
                    elif w == "secret":
                        field.secret = True
                    elif w.startswith("="):
                        field.default = w[1:]
                    else:
                        fail("unknown field attribute %r" % w)
                if isinstance(current, Method):
                    target = current.fields
                else:
                    if type_ == "bit":
                        fail("bit properties are not supported")
                    if field.reserved or field.default:
                        fail("properties cannot be reserved or have defaults")
                    target = current[1].properties
                if any(f.name == name for f in target):
                    fail("duplicate field %r" % name)
                target.append(field)
                continue

            kind = words[0]
            if kind == "class":
                if len(words) != 3:
                    fail("expected: class NAME ID")
                cls = Class(words[1], int(words[2]), lineno)
                if cls.name in by_name or any(c.index == cls.index for c in classes):
                    fail("duplicate class %s" % cls.name)
                classes.append(cls)
                by_name[cls.name] = cls
                current = None
            elif kind == "method":
                if not classes:
                    fail("method before any class")
                if len(words) < 3:
                    fail("expected: method NAME ID [attributes]")
                cls = classes[-1]
                m = Method(cls, words[1], int(words[2]), lineno)
                if any(x.name == m.name or x.index == m.index for x in cls.methods):
                    fail("duplicate method %s" % m.full_name)
                for w in words[3:]:
                    if w == "sync":
                        m.synchronous = True
                    elif w == "content":
                        m.content = True
                    elif w == "rabbitmq":
                        m.rabbitmq = True
                    elif w.startswith("reply="):
                        m.replies = w[len("reply="):].split(",")
                    elif w.startswith("sender="):
                        m.sender = w[len("sender="):]
                        if m.sender not in SENDERS:
                            fail("sender must be client, server or both")
                    else:
                        fail("unknown method attribute %r" % w)
                if m.sender is None:
                    fail("method needs sender=client|server|both")
                cls.methods.append(m)
                current = m
            elif kind == "properties":
                if len(words) != 2 or words[1] not in by_name:
                    fail("expected: properties CLASS (a class defined above)")
                cls = by_name[words[1]]
                if cls.properties is not None:
                    fail("properties of %s defined twice" % cls.name)
                cls.properties = []
                current = ("properties", cls)
            else:
                fail("unknown keyword %r" % kind)

    # Cross checks.
    for cls in classes:
        for m in cls.methods:
            for r in m.replies:
                if not any(x.name == r for x in cls.methods):
                    raise DefError("%s:%d: %s replies with unknown method %s" %
                                   (path, m.line, m.full_name, r))
            if len(m.replies) > 2:
                raise DefError("%s:%d: at most two replies" % (path, m.line))
            if m.replies and not m.synchronous:
                raise DefError("%s:%d: a method with replies must be sync" % (path, m.line))
            if m.content and cls.properties is None:
                raise DefError("%s:%d: content method in a class without properties" %
                               (path, m.line))
        if cls.properties is not None and len(cls.properties) > 15 * 4:
            raise DefError("%s: too many properties in %s" % (path, cls.name))
    return classes


# --------------------------------------------------------------------------------------------
# C++ emission
# --------------------------------------------------------------------------------------------

def cpp_string_literal(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def field_default(f):
    cpp, init = TYPES[f.type]
    if f.default is not None:
        if f.type in ("shortstr", "longstr"):
            return cpp_string_literal(f.default)
        if f.type == "bit":
            return "true" if f.default in ("1", "true") else "false"
        return str(int(f.default, 0))
    return init


def bit_runs(fields):
    """Splits a field list into items: a single non-bit field or a list of consecutive bits.

    Consecutive bit fields share octets, first bit in the least significant position, eight
    per octet; any other field ends the run.
    """
    items = []
    run = []
    for f in fields:
        if f.type == "bit":
            run.append(f)
            continue
        if run:
            items.append(run)
            run = []
        items.append(f)
    if run:
        items.append(run)
    return items


READ = {
    "octet": "r.Octet()",
    "short": "r.Short()",
    "long": "r.Long()",
    "longlong": "r.LongLong()",
    "shortstr": "r.ShortStr()",
    "longstr": "r.LongStr()",
    "timestamp": "r.LongLong()",
    "table": "r.Table()",
}
SKIP = {
    "octet": "r.Octet();",
    "short": "r.Short();",
    "long": "r.Long();",
    "longlong": "r.LongLong();",
    "shortstr": "r.ShortStrView();",
    "longstr": "r.LongStrView();",
    "timestamp": "r.LongLong();",
    "table": "r.SkipTable();",
}
WRITE = {
    "octet": "w.Octet(%s);",
    "short": "w.Short(%s);",
    "long": "w.Long(%s);",
    "longlong": "w.LongLong(%s);",
    "shortstr": "w.ShortStr(%s);",
    "longstr": "w.LongStr(%s);",
    "timestamp": "w.LongLong(%s);",
    "table": "w.Table(%s);",
}
ZERO = {
    "octet": "0",
    "short": "0",
    "long": "0",
    "longlong": "0",
    "shortstr": '""',
    "longstr": '""',
    "timestamp": "0",
    "table": "FieldTable()",
}


def emit_decode_body(fields, target, ind):
    out = []
    for item in bit_runs(fields):
        if isinstance(item, list):
            for start in range(0, len(item), 8):
                chunk = item[start:start + 8]
                if all(f.reserved for f in chunk):
                    out.append(ind + "r.Octet();  // reserved bits")
                    continue
                out.append(ind + "{")
                out.append(ind + "  const uint8_t bits = r.Octet();")
                for i, f in enumerate(chunk):
                    if f.reserved:
                        continue
                    out.append(ind + "  %s.%s = (bits & 0x%02x) != 0;" % (target, f.cpp_name, 1 << i))
                out.append(ind + "}")
        elif item.reserved:
            out.append(ind + SKIP[item.type] + "  // %s (reserved)" % item.name)
        else:
            out.append(ind + "%s.%s = %s;" % (target, item.cpp_name, READ[item.type]))
    return out


def emit_encode_body(fields, ind):
    """Encodes the fields of *this (the generated member function's object)."""
    out = []
    for item in bit_runs(fields):
        if isinstance(item, list):
            for start in range(0, len(item), 8):
                chunk = [(i, f) for i, f in enumerate(item[start:start + 8]) if not f.reserved]
                if not chunk:
                    out.append(ind + "w.Octet(0);  // reserved bits")
                    continue
                terms = ["(%s ? 0x%02x : 0)" % (f.cpp_name, 1 << i) for i, f in chunk]
                out.append(ind + "w.Octet(static_cast<uint8_t>(")
                for j, t in enumerate(terms):
                    out.append(ind + "    " + t + (" |" if j + 1 < len(terms) else "));"))
        elif item.reserved:
            out.append(ind + WRITE[item.type] % ZERO[item.type] + "  // %s (reserved)" % item.name)
        else:
            out.append(ind + WRITE[item.type] % item.cpp_name)
    return out


def emit_debug_field(f, expr):
    if f.secret:
        return 'internal::AppendRedacted(&s, %s.size());' % expr
    if f.type in ("shortstr", "longstr"):
        return "internal::AppendQuoted(&s, %s);" % expr
    if f.type == "bit":
        return 's += %s ? "true" : "false";' % expr
    if f.type == "table":
        return "s += %s.DebugString();" % expr
    return "s += std::to_string(%s);" % expr


def generate(classes, def_name):
    all_methods = [m for c in classes for m in c.methods]
    h = []
    a = h.append
    a("// Generated by net/amqp/gen/amqp_gen.py from %s. Do not edit." % def_name)
    a("//")
    a("// One struct per AMQP 0-9-1 method (arguments only; reserved arguments are written as")
    a("// zero and skipped on decode), the Method variant of all of them, and the content")
    a("// header property lists. Decoded strings and tables are owned copies: a decoded method")
    a("// does not refer to the frame it came from. See net/amqp/PROTOCOL.md.")
    a("")
    a("#ifndef SLUICE_NET_AMQP_METHODS_H_")
    a("#define SLUICE_NET_AMQP_METHODS_H_")
    a("")
    a("#include <cstdint>")
    a("#include <optional>")
    a("#include <span>")
    a("#include <string>")
    a("#include <string_view>")
    a("#include <variant>")
    a("")
    a('#include "absl/status/status.h"')
    a('#include "absl/status/statusor.h"')
    a('#include "net/amqp/field_table.h"')
    a("")
    a("namespace sluice::amqp {")
    a("")
    a("// Class ids.")
    for c in classes:
        a("inline constexpr uint16_t k%sClassId = %d;" % (camel(c.name), c.index))
    a("")
    for c in classes:
        for m in c.methods:
            args = [f for f in m.fields if not f.reserved]
            a("// %s (%d, %d)%s%s, sent by %s." % (
                m.full_name, c.index, m.index, ", synchronous" if m.synchronous else "",
                ", carries content" if m.content else "", m.sender))
            a("struct %s {" % m.struct)
            a("  static constexpr uint16_t kClassId = %d;" % c.index)
            a("  static constexpr uint16_t kMethodId = %d;" % m.index)
            a("  static constexpr std::string_view kName = %s;" % cpp_string_literal(m.full_name))
            a("  static constexpr bool kSynchronous = %s;" % ("true" if m.synchronous else "false"))
            a("  static constexpr bool kHasContent = %s;" % ("true" if m.content else "false"))
            if args:
                a("")
            for f in args:
                cpp, _ = TYPES[f.type]
                init = field_default(f)
                note = "  // %s" % f.type if f.type in ("shortstr", "longstr", "timestamp") else ""
                if f.secret:
                    note = "  // %s; redacted by DebugString()" % f.type
                if init is None:
                    a("  %s %s;%s" % (cpp, f.cpp_name, note))
                else:
                    a("  %s %s = %s;%s" % (cpp, f.cpp_name, init, note))
            a("")
            a("  // Appends the encoded arguments (not the class and method ids) to *out. Fails")
            a("  // only when a string or table is too long for its wire length prefix.")
            a("  absl::Status EncodeArgs(std::string* out) const;")
            a("  // Decodes arguments; every byte of `args` must be used (else SYNTAX_ERROR).")
            a("  static absl::StatusOr<%s> DecodeArgs(std::string_view args);" % m.struct)
            a("  std::string DebugString() const;")
            a("  // Calls f(name, member) for every argument but reserved ones, in wire order.")
            for const in ("", " const"):
                a("  template <typename F>")
                if args:
                    a("  void ForEachField(F&& f)%s {" % const)
                    for f in args:
                        a("    f(std::string_view(%s), %s);" % (cpp_string_literal(f.name), f.cpp_name))
                    a("  }")
                else:
                    a("  void ForEachField(F&&)%s {}" % const)
            a("  friend bool operator==(const %s&, const %s&) = default;" % (m.struct, m.struct))
            a("};")
            a("")
    a("// Every method of the definition file, in definition order.")
    a("using Method = std::variant<")
    for i, m in enumerate(all_methods):
        a("    %s%s" % (m.struct, "," if i + 1 < len(all_methods) else ">;"))
    a("")
    a("// Which peer may send a method.")
    a("enum class Sender : uint8_t { kClient, kServer, kBoth };")
    a("")
    a("struct MethodId {")
    a("  uint16_t class_id = 0;")
    a("  uint16_t method_id = 0;")
    a("  friend bool operator==(const MethodId&, const MethodId&) = default;")
    a("};")
    a("")
    a("// Facts about one method, from the definition file.")
    a("struct MethodInfo {")
    a("  uint16_t class_id;")
    a("  uint16_t method_id;")
    a("  std::string_view name;  // \"class.method\", e.g. \"basic.publish\"")
    a("  bool synchronous;")
    a("  bool has_content;")
    a("  Sender sender;")
    a("  // Method ids (same class) of the replies to a synchronous request; 0 = none.")
    a("  uint16_t responses[2];")
    a("};")
    a("")
    a("// nullptr when (class_id, method_id) is not a known method.")
    a("const MethodInfo* FindMethodInfo(uint16_t class_id, uint16_t method_id);")
    a("std::span<const MethodInfo> AllMethodInfos();")
    a("const MethodInfo& InfoOf(const Method& method);")
    a("MethodId IdOf(const Method& method);")
    a("// \"connection\", \"basic\", ...; empty for an unknown class id.")
    a("std::string_view ClassName(uint16_t class_id);")
    a("std::string DebugString(const Method& method);")
    a("")
    a("// Decodes the arguments of method (class_id, method_id). Errors carry a reply code")
    a("// (ReplyCodeOf): COMMAND_INVALID for an unknown method, SYNTAX_ERROR for bad arguments.")
    a("absl::StatusOr<Method> DecodeMethod(uint16_t class_id, uint16_t method_id,")
    a("                                    std::string_view args);")
    a("// Decodes a whole method frame payload: class id, method id, arguments.")
    a("absl::StatusOr<Method> DecodeMethodPayload(std::string_view payload);")
    a("// Appends a method frame payload (class id, method id, arguments) to *out.")
    a("absl::Status EncodeMethodPayload(const Method& method, std::string* out);")
    a("template <typename M>")
    a("  requires requires { M::kClassId; }")
    a("absl::Status EncodeMethodPayload(const M& method, std::string* out);")
    a("")
    for c in classes:
        if c.properties is None:
            continue
        props = c.properties
        name = camel(c.name) + "Properties"
        a("// Content header properties of class %s (%d). Property i (from 0) is present when" %
          (c.name, c.index))
        a("// bit 15 - i%15 of flag word i/15 is set; bit 0 of a flag word announces another.")
        a("struct %s {" % name)
        a("  static constexpr uint16_t kClassId = %d;" % c.index)
        for i, p in enumerate(props):
            if i < 15:
                a("  static constexpr uint16_t k%sFlag = 0x%04x;" % (camel(p.name), 1 << (15 - i)))
        a("")
        for p in props:
            cpp, _ = TYPES[p.type]
            note = "  // %s" % p.type if p.type in ("shortstr", "longstr", "timestamp") else ""
            a("  std::optional<%s> %s;%s" % (cpp, p.cpp_name, note))
        a("")
        a("  // Flag words as sent on the wire.")
        a("  void FlagWords(uint16_t words[%d], int* count) const;" % ((len(props) + 14) // 15))
        a("  // Appends property flags and the present property values to *out.")
        a("  absl::Status Encode(std::string* out) const;")
        a("  // Decodes property flags and values; every byte of `bytes` must be used.")
        a("  static absl::StatusOr<%s> Decode(std::string_view bytes);" % name)
        a("  std::string DebugString() const;")
        a("  // Calls f(name, member) for every property (std::optional members), in flag order.")
        for const in ("", " const"):
            a("  template <typename F>")
            a("  void ForEachField(F&& f)%s {" % const)
            for p in props:
                a("    f(std::string_view(%s), %s);" % (cpp_string_literal(p.name), p.cpp_name))
            a("  }")
        a("  friend bool operator==(const %s&, const %s&) = default;" % (name, name))
        a("};")
        a("")
    a("// ---- implementation details ----")
    a("")
    a("namespace internal {")
    a("void AppendMethodIds(uint16_t class_id, uint16_t method_id, std::string* out);")
    a("}  // namespace internal")
    a("")
    a("template <typename M>")
    a("  requires requires { M::kClassId; }")
    a("absl::Status EncodeMethodPayload(const M& method, std::string* out) {")
    a("  internal::AppendMethodIds(M::kClassId, M::kMethodId, out);")
    a("  return method.EncodeArgs(out);")
    a("}")
    a("")
    a("}  // namespace sluice::amqp")
    a("")
    a("#endif  // SLUICE_NET_AMQP_METHODS_H_")

    s = []
    b = s.append
    b("// Generated by net/amqp/gen/amqp_gen.py from %s. Do not edit." % def_name)
    b("")
    b('#include "net/amqp/methods.h"')
    b("")
    b("#include <utility>")
    b("")
    b('#include "net/amqp/reply_codes.h"')
    b('#include "net/amqp/wire.h"')
    b("")
    b("namespace sluice::amqp {")
    b("")
    b("namespace internal {")
    b("void AppendMethodIds(uint16_t class_id, uint16_t method_id, std::string* out) {")
    b("  WireWriter w(out);")
    b("  w.Short(class_id);")
    b("  w.Short(method_id);")
    b("}")
    b("}  // namespace internal")
    b("")
    for c in classes:
        for m in c.methods:
            args = [f for f in m.fields if not f.reserved]
            b("absl::Status %s::EncodeArgs(std::string* out) const {" % m.struct)
            b("  WireWriter w(out);")
            s.extend(emit_encode_body(m.fields, "  "))
            b("  return w.Finish(kName);")
            b("}")
            b("")
            b("absl::StatusOr<%s> %s::DecodeArgs(std::string_view args) {" % (m.struct, m.struct))
            b("  WireReader r(args);")
            b("  %s m;" % m.struct)
            s.extend(emit_decode_body(m.fields, "m", "  "))
            b("  if (absl::Status st = r.Finish(kName); !st.ok()) return st;")
            b("  return m;")
            b("}")
            b("")
            b("std::string %s::DebugString() const {" % m.struct)
            b("  std::string s(kName);")
            b('  s += "(";')
            for i, f in enumerate(args):
                b('  s += "%s%s=";' % (", " if i else "", f.cpp_name))
                b("  " + emit_debug_field(f, f.cpp_name))
            b('  s += ")";')
            b("  return s;")
            b("}")
            b("")
    b("namespace {")
    b("")
    b("constexpr MethodInfo kMethodInfos[] = {")
    for m in all_methods:
        resp = [x.index for r in m.replies for x in m.cls.methods if x.name == r]
        resp += [0] * (2 - len(resp))
        b("    {%d, %d, %s, %s, %s, Sender::%s, {%d, %d}}," % (
            m.cls.index, m.index, cpp_string_literal(m.full_name),
            "true" if m.synchronous else "false", "true" if m.content else "false",
            SENDERS[m.sender], resp[0], resp[1]))
    b("};")
    b("static_assert(std::size(kMethodInfos) == std::variant_size_v<Method>);")
    b("")
    b("constexpr uint32_t Key(uint16_t class_id, uint16_t method_id) {")
    b("  return (uint32_t{class_id} << 16) | method_id;")
    b("}")
    b("")
    b("template <typename M>")
    b("absl::StatusOr<Method> DecodeAs(std::string_view args) {")
    b("  absl::StatusOr<M> m = M::DecodeArgs(args);")
    b("  if (!m.ok()) return m.status();")
    b("  return Method(std::in_place_type<M>, *std::move(m));")
    b("}")
    b("")
    b("}  // namespace")
    b("")
    b("const MethodInfo* FindMethodInfo(uint16_t class_id, uint16_t method_id) {")
    b("  switch (Key(class_id, method_id)) {")
    for i, m in enumerate(all_methods):
        b("    case Key(%d, %d):" % (m.cls.index, m.index))
        b("      return &kMethodInfos[%d];" % i)
    b("  }")
    b("  return nullptr;")
    b("}")
    b("")
    b("std::span<const MethodInfo> AllMethodInfos() { return kMethodInfos; }")
    b("")
    b("const MethodInfo& InfoOf(const Method& method) { return kMethodInfos[method.index()]; }")
    b("")
    b("MethodId IdOf(const Method& method) {")
    b("  const MethodInfo& info = InfoOf(method);")
    b("  return MethodId{info.class_id, info.method_id};")
    b("}")
    b("")
    b("std::string_view ClassName(uint16_t class_id) {")
    b("  switch (class_id) {")
    for c in classes:
        b("    case %d:" % c.index)
        b("      return %s;" % cpp_string_literal(c.name))
    b("  }")
    b("  return {};")
    b("}")
    b("")
    b("std::string DebugString(const Method& method) {")
    b("  return std::visit([](const auto& m) { return m.DebugString(); }, method);")
    b("}")
    b("")
    b("absl::StatusOr<Method> DecodeMethod(uint16_t class_id, uint16_t method_id,")
    b("                                    std::string_view args) {")
    b("  switch (Key(class_id, method_id)) {")
    for m in all_methods:
        b("    case Key(%d, %d):" % (m.cls.index, m.index))
        b("      return DecodeAs<%s>(args);" % m.struct)
    b("  }")
    b("  return UnknownMethodError(class_id, method_id);")
    b("}")
    b("")
    b("absl::StatusOr<Method> DecodeMethodPayload(std::string_view payload) {")
    b("  WireReader r(payload);")
    b("  const uint16_t class_id = r.Short();")
    b("  const uint16_t method_id = r.Short();")
    b("  if (!r.ok()) {")
    b("    return AmqpError(ReplyCode::kSyntaxError, \"method frame shorter than its ids\");")
    b("  }")
    b("  return DecodeMethod(class_id, method_id, payload.substr(4));")
    b("}")
    b("")
    b("absl::Status EncodeMethodPayload(const Method& method, std::string* out) {")
    b("  return std::visit([out](const auto& m) { return EncodeMethodPayload(m, out); }, method);")
    b("}")
    b("")
    for c in classes:
        if c.properties is None:
            continue
        props = c.properties
        name = camel(c.name) + "Properties"
        nwords = (len(props) + 14) // 15
        b("void %s::FlagWords(uint16_t words[%d], int* count) const {" % (name, nwords))
        for w in range(nwords):
            b("  words[%d] = 0;" % w)
        for i, p in enumerate(props):
            b("  if (%s.has_value()) words[%d] |= 0x%04x;" % (p.cpp_name, i // 15, 1 << (15 - i % 15)))
        b("  int n = 1;")
        for w in range(1, nwords):
            b("  if (words[%d] != 0) n = %d;" % (w, w + 1))
        b("  for (int i = 0; i + 1 < n; ++i) words[i] |= 1;  // continuation")
        b("  *count = n;")
        b("}")
        b("")
        b("absl::Status %s::Encode(std::string* out) const {" % name)
        b("  uint16_t words[%d];" % nwords)
        b("  int count = 0;")
        b("  FlagWords(words, &count);")
        b("  WireWriter w(out);")
        b("  for (int i = 0; i < count; ++i) w.Short(words[i]);")
        for p in props:
            b("  if (%s.has_value()) %s" % (p.cpp_name, WRITE[p.type] % ("*" + p.cpp_name)))
        b('  return w.Finish("%s properties");' % c.name)
        b("}")
        b("")
        b("absl::StatusOr<%s> %s::Decode(std::string_view bytes) {" % (name, name))
        b("  WireReader r(bytes);")
        b("  uint16_t words[%d] = {};" % nwords)
        b("  int count = 0;")
        b("  while (true) {")
        b("    const uint16_t word = r.Short();")
        b("    if (!r.ok()) break;")
        b("    if (count == %d) {" % nwords)
        b("      if ((word & 0xfffe) != 0) {")
        b('        return AmqpError(ReplyCode::kSyntaxError, "unknown %s property flag");' % c.name)
        b("      }")
        b("    } else {")
        b("      words[count++] = word;")
        b("    }")
        b("    if ((word & 1) == 0) break;")
        b("  }")
        last = len(props) - (nwords - 1) * 15  # properties in the last word
        unused = ((1 << (15 - last)) - 1) << 1  # flag bits after the last property, excluding bit 0
        if unused:
            b("  if ((words[%d] & 0x%04x) != 0) {" % (nwords - 1, unused))
            b('    return AmqpError(ReplyCode::kSyntaxError, "unknown %s property flag");' % c.name)
            b("  }")
        b("  %s p;" % name)
        for i, p in enumerate(props):
            b("  if ((words[%d] & 0x%04x) != 0) p.%s = %s;" % (
                i // 15, 1 << (15 - i % 15), p.cpp_name, READ[p.type]))
        b('  if (absl::Status st = r.Finish("%s properties"); !st.ok()) return st;' % c.name)
        b("  return p;")
        b("}")
        b("")
        b("std::string %s::DebugString() const {" % name)
        b('  std::string s = "{";')
        b('  const char* sep = "";')
        for p in props:
            b("  if (%s.has_value()) {" % p.cpp_name)
            b("    s += sep;")
            b('    s += "%s=";' % p.cpp_name)
            b("    " + emit_debug_field(p, "(*%s)" % p.cpp_name))
            b('    sep = ", ";')
            b("  }")
        b('  s += "}";')
        b("  return s;")
        b("}")
        b("")
    b("}  // namespace sluice::amqp")
    return "\n".join(h) + "\n", "\n".join(s) + "\n"


def write_if_changed(path, text):
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return
    except FileNotFoundError:
        pass
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# XML comparison and import
# --------------------------------------------------------------------------------------------

def load_xml(path):
    import xml.etree.ElementTree as ET
    root = ET.parse(path).getroot()
    domains = {d.get("name"): d.get("type") for d in root.findall("domain")}
    classes = []
    for c in root.findall("class"):
        cls = Class(c.get("name"), int(c.get("index")), 0)
        fields = c.findall("field")
        if fields:
            cls.properties = []
            for f in fields:
                t = f.get("type") or domains[f.get("domain")]
                cls.properties.append(Field(f.get("name"), t))
        for x in c.findall("method"):
            m = Method(cls, x.get("name"), int(x.get("index")), 0)
            m.synchronous = x.get("synchronous") == "1"
            m.content = x.get("content") == "1"
            m.replies = [r.get("name") for r in x.findall("response")]
            chassis = {ch.get("name") for ch in x.findall("chassis")}
            # A method the server implements is one the client sends.
            if chassis == {"server"}:
                m.sender = "client"
            elif chassis == {"client"}:
                m.sender = "server"
            else:
                m.sender = "both"
            for f in x.findall("field"):
                t = f.get("type") or domains[f.get("domain")]
                m.fields.append(Field(f.get("name"), t, reserved=f.get("reserved") == "1"))
            cls.methods.append(m)
        classes.append(cls)
    return classes


def check_xml(def_classes, xml_classes):
    """Returns a list of differences. Methods marked `rabbitmq` in the definition file are
    RabbitMQ extensions or behaviours: they may be absent from the XML, and their sync and
    reply attributes are RabbitMQ's, but ids and arguments must still agree when present."""
    problems = []
    xml_by_name = {c.name: c for c in xml_classes}
    for c in def_classes:
        xc = xml_by_name.get(c.name)
        if xc is None:
            if not all(m.rabbitmq for m in c.methods):
                problems.append("class %s: not in the XML" % c.name)
            continue
        if xc.index != c.index:
            problems.append("class %s: id %d, XML says %d" % (c.name, c.index, xc.index))
        if c.properties is not None or xc.properties is not None:
            ours = [(p.name, p.type) for p in (c.properties or [])]
            theirs = [(p.name, p.type) for p in (xc.properties or [])]
            # The XML calls basic's last property "reserved"; RabbitMQ names it cluster-id.
            ours_cmp = [("reserved" if n == "cluster-id" else n, t) for n, t in ours]
            if ours_cmp != theirs:
                problems.append("class %s: properties %s, XML says %s" % (c.name, ours, theirs))
        xml_methods = {m.name: m for m in xc.methods}
        for m in c.methods:
            xm = xml_methods.get(m.name)
            if xm is None:
                if not m.rabbitmq:
                    problems.append("%s: not in the XML" % m.full_name)
                continue
            if xm.index != m.index:
                problems.append("%s: id %d, XML says %d" % (m.full_name, m.index, xm.index))
            if xm.content != m.content:
                problems.append("%s: content flag differs" % m.full_name)
            ours = [(f.name, f.type, f.reserved) for f in m.fields]
            theirs = [(f.name, f.type, f.reserved) for f in xm.fields]
            if ours != theirs:
                problems.append("%s: fields %s, XML says %s" % (m.full_name, ours, theirs))
            if not m.rabbitmq:
                if xm.synchronous != m.synchronous:
                    problems.append("%s: sync flag differs" % m.full_name)
                if xm.replies != m.replies:
                    problems.append("%s: replies %s, XML says %s" %
                                    (m.full_name, m.replies, xm.replies))
                if xm.sender != m.sender:
                    problems.append("%s: sender %s, XML says %s" %
                                    (m.full_name, m.sender, xm.sender))
        for name in xml_methods:
            if not any(m.name == name for m in c.methods):
                problems.append("%s.%s: in the XML but not in the definition" % (c.name, name))
    for xc in xml_classes:
        if not any(c.name == xc.name for c in def_classes):
            problems.append("class %s: in the XML but not in the definition" % xc.name)
    return problems


def emit_def(xml_classes):
    lines = []
    for c in xml_classes:
        lines.append("class %s %d" % (c.name, c.index))
        for m in c.methods:
            attrs = []
            if m.synchronous:
                attrs.append("sync")
            if m.content:
                attrs.append("content")
            if m.replies:
                attrs.append("reply=" + ",".join(m.replies))
            attrs.append("sender=" + m.sender)
            lines.append("method %s %d %s" % (m.name, m.index, " ".join(attrs)))
            for f in m.fields:
                lines.append("  %s %s%s" % (f.name, f.type, " reserved" if f.reserved else ""))
        if c.properties:
            lines.append("properties %s" % c.name)
            for p in c.properties:
                lines.append("  %s %s" % (p.name, p.type))
        lines.append("")
    return "\n".join(lines)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--def", dest="def_path", required=True)
    g.add_argument("--out-dir", required=True)
    c = sub.add_parser("check-xml")
    c.add_argument("--def", dest="def_path", required=True)
    c.add_argument("--xml", required=True)
    e = sub.add_parser("emit-def")
    e.add_argument("--xml", required=True)
    args = parser.parse_args(argv)

    try:
        if args.command == "generate":
            classes = parse_def(args.def_path)
            header, source = generate(classes, "net/amqp/" + os.path.basename(args.def_path))
            os.makedirs(args.out_dir, exist_ok=True)
            write_if_changed(os.path.join(args.out_dir, "methods.h"), header)
            write_if_changed(os.path.join(args.out_dir, "methods.cc"), source)
            return 0
        if args.command == "check-xml":
            if not os.path.exists(args.xml):
                if os.environ.get("CI") == "true":
                    print("FAILED: %s not found (Debian package amqp-specs, which "
                          "tools/lib/deps.sh installs)" % args.xml)
                    return 1
                print("skipped: %s not found (Debian package amqp-specs)" % args.xml)
                return 77
            problems = check_xml(parse_def(args.def_path), load_xml(args.xml))
            for p in problems:
                print(p)
            if problems:
                return 1
            print("definition agrees with %s" % args.xml)
            return 0
        if args.command == "emit-def":
            sys.stdout.write(emit_def(load_xml(args.xml)))
            return 0
    except DefError as err:
        print("amqp_gen: %s" % err, file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
