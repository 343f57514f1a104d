#!/usr/bin/env python3
"""Generates the Kafka message codecs from net/kafka/messages/*.def.

Usage: kafka_gen.py --out DIR DEF_FILE...

For each definition file NAME.def it writes DIR/NAME.h and DIR/NAME.cc (one struct per request,
response or data structure, with Decode/Encode), and once for all of them DIR/registry.{h,cc}
(the API table and the AnyRequest/AnyResponse variants with their dispatchers) and
DIR/testing.{h,cc} (FillForTest: every field present in a version set to a non-default value,
for round-trip tests and fuzz seeds). The definition format is described in
net/kafka/PROTOCOL.md. Python 3 standard library only.
"""

import argparse
import os
import re
import sys

INF = 1 << 15

# type name -> (C++ type, Reader method, Writer method, wire size)
PRIMITIVES = {
    'int8': ('int8_t', 'ReadInt8', 'WriteInt8', 1),
    'int16': ('int16_t', 'ReadInt16', 'WriteInt16', 2),
    'int32': ('int32_t', 'ReadInt32', 'WriteInt32', 4),
    'int64': ('int64_t', 'ReadInt64', 'WriteInt64', 8),
    'uint16': ('uint16_t', 'ReadUint16', 'WriteUint16', 2),
    'uint32': ('uint32_t', 'ReadUint32', 'WriteUint32', 4),
    'float64': ('double', 'ReadFloat64', 'WriteFloat64', 8),
    'bool': ('bool', 'ReadBool', 'WriteBool', 1),
    'uuid': ('Uuid', 'ReadUuid', 'WriteUuid', 16),
}
INT_RANGES = {
    'int8': (-(1 << 7), (1 << 7) - 1),
    'int16': (-(1 << 15), (1 << 15) - 1),
    'int32': (-(1 << 31), (1 << 31) - 1),
    'int64': (-(1 << 63), (1 << 63) - 1),
    'uint16': (0, (1 << 16) - 1),
    'uint32': (0, (1 << 32) - 1),
}
LENGTH_PREFIXED = ('string', 'bytes', 'records')
CPP_KEYWORDS = {
    'auto', 'bool', 'break', 'case', 'char', 'class', 'const', 'default', 'delete', 'do',
    'double', 'else', 'enum', 'explicit', 'export', 'extern', 'false', 'float', 'for', 'friend',
    'goto', 'if', 'inline', 'int', 'long', 'namespace', 'new', 'operator', 'private',
    'protected', 'public', 'register', 'return', 'short', 'signed', 'sizeof', 'static',
    'struct', 'switch', 'template', 'this', 'throw', 'true', 'try', 'typedef', 'union',
    'unsigned', 'using', 'virtual', 'void', 'volatile', 'while', 'version',
}


class DefError(Exception):
    pass


def parse_versions(text, where):
    """'N+', 'N-M', 'N' or 'none' -> (lo, hi) or None."""
    if text == 'none':
        return None
    m = re.fullmatch(r'(\d+)\+', text)
    if m:
        return (int(m.group(1)), INF)
    m = re.fullmatch(r'(\d+)-(\d+)', text)
    if m:
        lo, hi = int(m.group(1)), int(m.group(2))
        if lo > hi:
            raise DefError(f'{where}: empty version range {text}')
        return (lo, hi)
    m = re.fullmatch(r'\d+', text)
    if m:
        return (int(text), int(text))
    raise DefError(f'{where}: bad version range {text!r}')


def snake(name):
    s = re.sub(r'(?<=[a-z0-9])(?=[A-Z])', '_', name)
    s = re.sub(r'(?<=[A-Z])(?=[A-Z][a-z])', '_', s).lower()
    if s in CPP_KEYWORDS:
        s += '_value'
    return s


class Field:
    def __init__(self, name, type_text, versions, attrs, where):
        self.name = name
        self.member = snake(name)
        self.where = where
        self.versions = versions
        self.is_array = type_text.startswith('[]')
        self.base = type_text[2:] if self.is_array else type_text
        self.nullable = None
        self.tag = None
        self.default = None
        self.children = []
        for key, value in attrs.items():
            if key == 'null':
                self.nullable = parse_versions(value, where)
            elif key == 'tag':
                self.tag = int(value)
            elif key == 'default':
                self.default = value
            else:
                raise DefError(f'{where}: unknown attribute {key!r}')

    @property
    def is_struct(self):
        return self.base not in PRIMITIVES and self.base not in LENGTH_PREFIXED and \
            self.base != 'string'

    def check(self):
        if self.is_struct and not self.children:
            raise DefError(f'{self.where}: struct type {self.base} has no fields')
        if not self.is_struct and self.children:
            raise DefError(f'{self.where}: type {self.base} cannot have fields')
        if self.nullable and not (self.is_array or self.base in LENGTH_PREFIXED):
            raise DefError(f'{self.where}: only strings, bytes, records and arrays are nullable')
        if self.base == 'records' and self.is_array:
            raise DefError(f'{self.where}: arrays of records are not supported')
        if self.default == 'null' and not self.nullable:
            raise DefError(f'{self.where}: default null on a non-nullable field')
        default_init(self)  # raises on a default the type cannot take


class Struct:
    def __init__(self, name, fields):
        self.name = name
        self.fields = fields


class Message:
    def __init__(self, kind, api, key, versions, flexible, source):
        self.kind = kind  # 'request', 'response' or 'data'
        self.api = api
        self.key = key
        self.versions = versions
        self.flexible = flexible  # first flexible version or None
        self.fields = []
        self.source = source

    @property
    def cpp_name(self):
        return self.api if self.kind == 'data' else self.api + self.kind.capitalize()

    def structs(self):
        """Nested structs in declaration order (children before parents)."""
        out = []
        seen = {}

        def walk(fields):
            for f in fields:
                if f.is_struct:
                    walk(f.children)
                    if f.base in seen:
                        raise DefError(f'{f.where}: struct {f.base} defined twice')
                    seen[f.base] = True
                    out.append(Struct(f.base, f.children))
        walk(self.fields)
        return out


def parse_attrs(tokens, where):
    attrs = {}
    for t in tokens:
        if '=' not in t:
            raise DefError(f'{where}: expected key=value, got {t!r}')
        k, v = t.split('=', 1)
        attrs[k] = v
    return attrs


def parse_def(path):
    """Returns the Messages one definition file describes."""
    messages = []
    api = None
    section = None
    stack = []  # (indent, field list)
    with open(path, encoding='utf-8') as f:
        lines = f.read().split('\n')
    for lineno, raw in enumerate(lines, 1):
        where = f'{path}:{lineno}'
        line = raw.split('#', 1)[0].rstrip()
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(' '))
        tokens = line.split()
        if indent == 0:
            if tokens[0] in ('api', 'data'):
                attrs = parse_attrs(tokens[2:], where)
                versions = parse_versions(attrs.get('versions', ''), where)
                if versions is None or versions[1] == INF:
                    raise DefError(f'{where}: versions must be a closed range')
                flexible = parse_versions(attrs.get('flexible', 'none'), where)
                flex_lo = flexible[0] if flexible else None
                api = dict(name=tokens[1], key=int(attrs['key']) if 'key' in attrs else None,
                           versions=versions, flexible=flex_lo, kind=tokens[0])
                if tokens[0] == 'data':
                    section = Message('data', api['name'], None, versions, flex_lo, path)
                    messages.append(section)
                    stack = [(0, section.fields)]
                else:
                    section = None
            elif tokens[0] in ('request', 'response') and len(tokens) == 1:
                if api is None or api['kind'] != 'api':
                    raise DefError(f'{where}: {tokens[0]} outside an api')
                section = Message(tokens[0], api['name'], api['key'], api['versions'],
                                  api['flexible'], path)
                messages.append(section)
                stack = [(0, section.fields)]
            else:
                raise DefError(f'{where}: unexpected {tokens[0]!r}')
            continue
        if section is None:
            raise DefError(f'{where}: field outside a message')
        if len(tokens) < 3:
            raise DefError(f'{where}: expected NAME TYPE VERSIONS [attrs]')
        versions = parse_versions(tokens[2], where)
        if versions is None:
            raise DefError(f'{where}: a field needs versions')
        field = Field(tokens[0], tokens[1], versions, parse_attrs(tokens[3:], where), where)
        while stack and indent <= stack[-1][0] and len(stack) > 1:
            stack.pop()
        parent_indent, parent_fields = stack[-1]
        if indent <= parent_indent:
            raise DefError(f'{where}: bad indentation')
        parent_fields.append(field)
        stack.append((indent, field.children))
    for m in messages:
        def check(fields, msg=m):
            names = set()
            tags = set()
            for fl in fields:
                fl.check()
                if fl.name in names:
                    raise DefError(f'{fl.where}: duplicate field {fl.name}')
                names.add(fl.name)
                if fl.tag is not None:
                    if msg.flexible is None or fl.versions[0] < msg.flexible:
                        raise DefError(f'{fl.where}: tagged field outside flexible versions')
                    if fl.tag in tags:
                        raise DefError(f'{fl.where}: duplicate tag {fl.tag}')
                    tags.add(fl.tag)
                check(fl.children, msg)
        check(m.fields)
        m.structs()
    return messages


# ----------------------------------------------------------------------------------------------
# C++ emission helpers


def range_cond(rng, msg):
    """C expression for 'version in rng', simplified against the message's version range."""
    if rng is None:
        return 'false'
    lo, hi = rng
    mlo, mhi = msg.versions
    if lo > mhi or hi < mlo:
        return 'false'
    parts = []
    if lo > mlo:
        parts.append(f'version >= {lo}')
    if hi < mhi:
        parts.append(f'version <= {hi}')
    return ' && '.join(parts) if parts else 'true'


def present(f, msg):
    lo, hi = f.versions
    return not (lo > msg.versions[1] or hi < msg.versions[0])


def elem_cpp(f):
    if f.is_struct:
        return f.base
    if f.base in PRIMITIVES:
        return PRIMITIVES[f.base][0]
    if f.base == 'string':
        return 'std::string'
    if f.base == 'bytes':
        return 'std::vector<uint8_t>'
    raise DefError(f'{f.where}: no C++ type for {f.base}')


def cpp_type(f):
    if f.base == 'records':
        return 'Records'
    t = elem_cpp(f)
    if f.is_array:
        t = f'std::vector<{t}>'
    if f.nullable and (f.is_array or f.base in ('string', 'bytes')):
        t = f'std::optional<{t}>'
    return t


def int_literal(base, text, where):
    value = int(text, 0)
    lo, hi = INT_RANGES[base]
    if not lo <= value <= hi:
        raise DefError(f'{where}: default {text} out of range for {base}')
    if value == lo and lo < 0:
        return f'std::numeric_limits<{PRIMITIVES[base][0]}>::min()'
    if base == 'int64' and abs(value) > (1 << 31):
        return f'int64_t{{{value}}}'
    return text if not text.startswith('0x') else text


def default_init(f):
    """The member initializer (without '='), or None for value-initialization."""
    d = f.default
    if f.is_array or f.is_struct or f.base in ('uuid', 'records'):
        if d not in (None, 'null'):
            raise DefError(f'{f.where}: unsupported default {d!r}')
        if f.nullable and d != 'null' and f.is_array:
            return f'{elem_cpp_vector(f)}()'
        return None
    if f.base == 'bool':
        if d not in (None, 'true', 'false'):
            raise DefError(f'{f.where}: bad bool default {d!r}')
        return d or 'false'
    if f.base in INT_RANGES:
        return int_literal(f.base, d or '0', f.where)
    if f.base == 'float64':
        return d or '0.0'
    if f.base == 'string':
        if d == 'null':
            return None
        text = d or ''
        return 'std::string()' if not text else f'std::string("{text}")'
    if f.base == 'bytes':
        if d not in (None, 'null'):
            raise DefError(f'{f.where}: unsupported bytes default {d!r}')
        return 'std::vector<uint8_t>()' if (f.nullable and d != 'null') else None
    raise DefError(f'{f.where}: no default for {f.base}')


def elem_cpp_vector(f):
    return f'std::vector<{elem_cpp(f)}>'


def nondefault_expr(f, x):
    """C expression: is field value x different from the field's default?"""
    if f.is_array:
        if f.nullable:
            return f'{x}.has_value()' if f.default == 'null' else \
                f'!({x}.has_value() && {x}->empty())'
        return f'!{x}.empty()'
    if f.is_struct:
        return f'{x} != {f.base}{{}}'
    if f.base == 'records':
        return f'{x} != Records()'
    if f.base == 'uuid':
        return f'!{x}.IsZero()'
    if f.base in ('string', 'bytes'):
        if f.nullable:
            if f.default == 'null':
                return f'{x}.has_value()'
            return f'!({x}.has_value() && {x}->empty())' if not f.default else \
                f'{x} != std::optional<std::string>("{f.default}")'
        return f'!{x}.empty()' if not f.default else f'{x} != "{f.default}"'
    return f'{x} != {default_init(f)}'


def min_size_expr(f, msg):
    """C expression: least number of bytes one value of f's element type occupies."""
    if f.is_struct:
        return f'{f.base}::MinWireSize(version)'
    if f.base in PRIMITIVES:
        return str(PRIMITIVES[f.base][3])
    if f.base == 'string':
        return '(flexible ? 1 : 2)'
    return '(flexible ? 1 : 4)'


def decode_value(f, msg, target, r, ind):
    """Statements decoding one non-array value of f into lvalue `target` from reader r."""
    p = ' ' * ind
    ret = 'SLUICE_KAFKA_RETURN_IF_ERROR'
    if f.is_struct:
        return [f'{p}{ret}({target}.Decode({r}, version));']
    if f.base in PRIMITIVES:
        return [f'{p}{ret}({r}.{PRIMITIVES[f.base][1]}(&{target}));']
    return [f'{p}{ret}({r}.ReadString(flexible, &{target}));'] if f.base == 'string' else \
        [f'{p}{ret}({r}.ReadBytes(flexible, &{target}));']


def decode_field(f, msg, r, ind):
    p = ' ' * ind
    x = f.member
    ret = 'SLUICE_KAFKA_RETURN_IF_ERROR'
    nullc = range_cond(f.nullable, msg)
    if f.is_array:
        out = [f'{p}{{',
               f'{p}  int32_t n = 0;',
               f'{p}  {ret}({r}.ReadArrayCount(flexible, {nullc if f.nullable else "false"}, '
               f'{min_size_expr(f, msg)}, &n));']
        if f.nullable:
            out += [f'{p}  if (n < 0) {{',
                    f'{p}    {x}.reset();',
                    f'{p}  }} else {{',
                    f'{p}    auto& v = {x}.emplace();']
        else:
            out += [f'{p}  {{', f'{p}    auto& v = {x};', f'{p}    v.clear();']
        out += [f'{p}    v.reserve(static_cast<size_t>(std::min(n, kMaxArrayReserve)));',
                f'{p}    for (int32_t i = 0; i < n; ++i) {{']
        out += decode_value(f, msg, 'v.emplace_back()', r, ind + 6)
        out += [f'{p}    }}', f'{p}  }}', f'{p}}}']
        return out
    if f.base == 'records':
        return [f'{p}{ret}({r}.ReadRecords(flexible, {nullc}, &{x}));']
    if f.nullable and f.base == 'string':
        return [f'{p}{ret}({r}.ReadNullableString(flexible, {nullc}, &{x}));']
    if f.nullable and f.base == 'bytes':
        return [f'{p}{ret}({r}.ReadNullableBytes(flexible, {nullc}, &{x}));']
    return decode_value(f, msg, x, r, ind)


def encode_value(f, msg, value, w, ind):
    p = ' ' * ind
    if f.is_struct:
        return [f'{p}{value}.Encode({w}, version);']
    if f.base in PRIMITIVES:
        return [f'{p}{w}.{PRIMITIVES[f.base][2]}({value});']
    if f.base == 'string':
        return [f'{p}{w}.WriteString(flexible, {value});']
    return [f'{p}{w}.WriteBytes(flexible, {value});']


def encode_field(f, msg, w, ind):
    p = ' ' * ind
    x = f.member
    nullc = range_cond(f.nullable, msg)
    if f.is_array:
        if f.nullable:
            out = [f'{p}if (!{x}.has_value()) {{',
                   f'{p}  {w}.WriteArrayCount(flexible, ({nullc}) ? -1 : 0);',
                   f'{p}}} else {{',
                   f'{p}  {w}.WriteArrayCount(flexible, static_cast<int32_t>({x}->size()));',
                   f'{p}  for (const auto& e : *{x}) {{']
            out += encode_value(f, msg, 'e', w, ind + 4)
            out += [f'{p}  }}', f'{p}}}']
            return out
        out = [f'{p}{w}.WriteArrayCount(flexible, static_cast<int32_t>({x}.size()));',
               f'{p}for (const auto& e : {x}) {{']
        out += encode_value(f, msg, 'e', w, ind + 2)
        out += [f'{p}}}']
        return out
    if f.base == 'records':
        return [f'{p}{w}.WriteRecords(flexible, {nullc}, {x});']
    if f.nullable and f.base == 'string':
        return [f'{p}{w}.WriteNullableString(flexible, {nullc}, {x});']
    if f.nullable and f.base == 'bytes':
        return [f'{p}{w}.WriteNullableBytes(flexible, {nullc}, {x});']
    return encode_value(f, msg, x, w, ind)


def guarded(cond, body, ind):
    """Wraps statements in `if (cond)` unless cond is 'true'."""
    if cond == 'true':
        return body
    p = ' ' * ind
    return [f'{p}if ({cond}) {{'] + ['  ' + b for b in body] + [f'{p}}}']


def flexible_expr(msg):
    if msg.flexible is None or msg.flexible > msg.versions[1]:
        return 'false'
    if msg.flexible <= msg.versions[0]:
        return 'true'
    return f'version >= {msg.flexible}'


def struct_decl(name, fields, msg, ind, top):
    p = ' ' * ind
    out = [f'{p}struct {name} {{']
    if top:
        if msg.kind != 'data':
            out.append(f'{p}  static constexpr int16_t kApiKey = {msg.key};')
        out += [f'{p}  static constexpr int16_t kMinVersion = {msg.versions[0]};',
                f'{p}  static constexpr int16_t kMaxVersion = {msg.versions[1]};',
                f'{p}  // First version using compact encodings and tagged fields (-1: none).',
                f'{p}  static constexpr int16_t kFirstFlexibleVersion = '
                f'{msg.flexible if msg.flexible is not None and msg.flexible <= msg.versions[1] else -1};',
                f'{p}  static constexpr std::string_view kName = "{msg.cpp_name}";',
                '']
        for s in msg.structs():
            out += struct_decl(s.name, s.fields, msg, ind + 2, False)
            out.append('')
    for f in fields:
        if not present(f, msg):
            continue
        init = default_init(f)
        ver = f'{f.versions[0]}+' if f.versions[1] >= msg.versions[1] else \
            f'{f.versions[0]}-{f.versions[1]}'
        notes = [f'v{ver}']
        if f.nullable:
            notes.append(f'nullable v{f.nullable[0]}+' if f.nullable[1] >= INF
                         else f'nullable v{f.nullable[0]}-{f.nullable[1]}')
        if f.tag is not None:
            notes.append(f'tag {f.tag}')
        decl = f'{p}  {cpp_type(f)} {f.member}'
        decl += f' = {init};' if init is not None else ';'
        out.append(f'{decl}  // {", ".join(notes)}')
    out += ['',
            f'{p}  // Decodes the fields of `version` (an unsupported version fails).' if top
            else f'{p}  // Decodes the fields of `version` into a default-constructed struct.',
            f'{p}  absl::Status Decode(Reader& r, int16_t version);',
            f'{p}  // Encodes the fields of `version`; fields absent from it are not written.',
            f'{p}  void Encode(Writer& w, int16_t version) const;',
            f'{p}  // Least number of bytes an encoding of `version` takes.',
            f'{p}  static size_t MinWireSize(int16_t version);']
    if top and msg.kind == 'data':
        out += [f'{p}  // The embedded form: an int16 version, then the fields. Versions above',
                f'{p}  // kMaxVersion are read as kMaxVersion and trailing bytes are ignored,',
                f'{p}  // as newer versions only append fields.',
                f'{p}  static absl::StatusOr<{name}> DecodeVersioned(std::span<const uint8_t> bytes);',
                f'{p}  std::vector<uint8_t> EncodeVersioned(int16_t version) const;']
    out += ['',
            f'{p}  friend bool operator==(const {name}&, const {name}&) = default;',
            f'{p}}};']
    return out


def struct_defs(qual, fields, msg, top):
    flex = flexible_expr(msg)
    live = [f for f in fields if present(f, msg)]
    regular = [f for f in live if f.tag is None]
    tagged = sorted([f for f in live if f.tag is not None], key=lambda f: f.tag)
    out = []

    # Decode
    out.append(f'absl::Status {qual}::Decode(Reader& r, int16_t version) {{')
    if top:
        out += ['  if (version < kMinVersion || version > kMaxVersion) {',
                '    return absl::InvalidArgumentError(',
                f'        absl::StrCat("{msg.cpp_name} version ", version, " is not supported"));',
                '  }',
                f'  *this = {qual}();']
    out.append(f'  [[maybe_unused]] const bool flexible = {flex};')
    for f in regular:
        out += guarded(range_cond(f.versions, msg), decode_field(f, msg, 'r', 2), 2)
    if flex != 'false':
        body = []
        if tagged:
            body += ['  SLUICE_KAFKA_RETURN_IF_ERROR(r.ReadTaggedFields(',
                     '      [&](uint32_t tag, Reader& tr, bool* known) -> absl::Status {',
                     '        switch (tag) {']
            for f in tagged:
                cond = range_cond(f.versions, msg)
                body += [f'          case {f.tag}:']
                if cond != 'true':
                    body += [f'            if (!({cond})) break;']
                body += ['            *known = true;']
                body += decode_field(f, msg, 'tr', 12)
                body += ['            return absl::OkStatus();']
            body += ['          default:',
                     '            break;',
                     '        }',
                     '        return absl::OkStatus();',
                     '      }));']
        else:
            body += ['  SLUICE_KAFKA_RETURN_IF_ERROR(',
                     '      r.ReadTaggedFields([](uint32_t, Reader&, bool*) { '
                     'return absl::OkStatus(); }));']
        out += guarded('flexible', body, 2)
    out += ['  return absl::OkStatus();', '}', '']

    # Encode
    out.append(f'void {qual}::Encode(Writer& w, int16_t version) const {{')
    out.append(f'  [[maybe_unused]] const bool flexible = {flex};')
    for f in regular:
        out += guarded(range_cond(f.versions, msg), encode_field(f, msg, 'w', 2), 2)
    if flex != 'false':
        body = []
        if tagged:
            conds = []
            for f in tagged:
                c = range_cond(f.versions, msg)
                nd = nondefault_expr(f, f.member)
                conds.append(nd if c == 'true' else f'({c}) && {nd}')
            body.append('  uint32_t tagged = 0;')
            for i, c in enumerate(conds):
                body.append(f'  const bool write_{i} = {c};')
                body.append(f'  tagged += write_{i} ? 1 : 0;')
            body.append('  w.WriteUnsignedVarint(tagged);')
            for i, f in enumerate(tagged):
                body += [f'  if (write_{i}) {{',
                         '    Writer tw;']
                body += encode_field(f, msg, 'tw', 4)
                body += [f'    w.WriteUnsignedVarint({f.tag});',
                         '    w.WriteUnsignedVarint(static_cast<uint32_t>(tw.size()));',
                         '    w.Append(std::move(tw));',
                         '  }']
        else:
            body.append('  w.WriteUnsignedVarint(0);')
        out += guarded('flexible', body, 2)
    out += ['}', '']

    # MinWireSize
    out.append(f'size_t {qual}::MinWireSize(int16_t version) {{')
    out.append(f'  [[maybe_unused]] const bool flexible = {flex};')
    out.append('  size_t n = flexible ? 1 : 0;')
    for f in regular:
        if f.is_array:
            e = '(flexible ? 1 : 4)'
        else:
            e = min_size_expr(f, msg)
            if f.base == 'bytes' or f.base == 'records':
                e = '(flexible ? 1 : 4)'
        out += guarded(range_cond(f.versions, msg), [f'  n += {e};'], 2)
    out += ['  return n;', '}', '']
    return out


def emit_header(stem, messages, source_rel):
    out = [f'// Generated by net/kafka/gen/kafka_gen.py from {source_rel}. Do not edit.',
           '#pragma once', '',
           '#include <cstdint>', '#include <optional>', '#include <span>', '#include <string>',
           '#include <string_view>', '#include <vector>', '',
           '#include "absl/status/status.h"', '#include "absl/status/statusor.h"',
           '#include "net/kafka/wire.h"', '',
           'namespace sluice::kafka {', '']
    for m in messages:
        out += struct_decl(m.cpp_name, m.fields, m, 0, True)
        out.append('')
    out += ['}  // namespace sluice::kafka', '']
    return out


def emit_source(stem, messages, source_rel):
    out = [f'// Generated by net/kafka/gen/kafka_gen.py from {source_rel}. Do not edit.',
           f'#include "net/kafka/messages/{stem}.h"', '',
           '#include <algorithm>', '#include <limits>', '#include <utility>', '',
           '#include "absl/strings/str_cat.h"', '',
           'namespace sluice::kafka {', '']
    for m in messages:
        for s in m.structs():
            out += struct_defs(f'{m.cpp_name}::{s.name}', s.fields, m, False)
        out += struct_defs(m.cpp_name, m.fields, m, True)
        if m.kind == 'data':
            n = m.cpp_name
            out += [f'absl::StatusOr<{n}> {n}::DecodeVersioned(std::span<const uint8_t> bytes) {{',
                    '  Reader r(bytes);',
                    '  int16_t version = 0;',
                    '  SLUICE_KAFKA_RETURN_IF_ERROR(r.ReadInt16(&version));',
                    '  if (version < kMinVersion) {',
                    '    return absl::InvalidArgumentError(',
                    f'        absl::StrCat("{n} version ", version, " is not supported"));',
                    '  }',
                    f'  {n} value;',
                    '  SLUICE_KAFKA_RETURN_IF_ERROR(value.Decode(r, std::min(version, kMaxVersion)));',
                    '  return value;',
                    '}', '',
                    f'std::vector<uint8_t> {n}::EncodeVersioned(int16_t version) const {{',
                    '  Writer w;',
                    '  w.WriteInt16(version);',
                    '  Encode(w, version);',
                    '  return std::move(w).Finish().owned;',
                    '}', '']
    out += ['}  // namespace sluice::kafka', '']
    return out


# ----------------------------------------------------------------------------------------------
# Test value filler


def fill_value(f, msg, target, seed, k, ind):
    """Statements assigning a non-default value of f's element type to `target`."""
    p = ' ' * ind
    if f.is_struct:
        return [f'{p}Fill(&{target}, version, ({seed}) * 5 + {k});']
    if f.base in INT_RANGES:
        t = PRIMITIVES[f.base][0]
        return [f'{p}{target} = static_cast<{t}>((({seed}) + {k}) % 100 + 2);']
    if f.base == 'bool':
        return [f'{p}{target} = {"false" if f.default == "true" else "true"};']
    if f.base == 'float64':
        return [f'{p}{target} = static_cast<double>({seed} + {k}) + 0.5;']
    if f.base == 'uuid':
        return [f'{p}for (size_t i = 0; i < 16; ++i) {{',
                f'{p}  {target}.bytes[i] = static_cast<uint8_t>(i * 7 + {seed} + {k} + 1);',
                f'{p}}}']
    if f.base == 'string':
        return [f'{p}{target} = absl::StrCat("{f.name}-", {seed}, "-", {k});']
    if f.base == 'bytes':
        return [f'{p}{target} = std::vector<uint8_t>{{static_cast<uint8_t>({k}), '
                f'static_cast<uint8_t>({seed}), 0xff}};']
    if f.base == 'records':
        return [f'{p}{target} = Records::Borrowed(TestRecordBytes());']
    raise DefError(f'{f.where}: cannot fill {f.base}')


def fill_struct(qual, fields, msg):
    out = [f'void Fill({qual}* m, int16_t version, uint32_t seed) {{']
    for k, f in enumerate(fields):
        if not present(f, msg):
            continue
        body = []
        if f.is_array:
            vec = elem_cpp_vector(f)
            if f.is_struct:
                vec = f'std::vector<{msg.cpp_name}::{f.base}>'
            body.append(f'  {{')
            body.append(f'    {vec} v(2);')
            body.append(f'    for (uint32_t i = 0; i < 2; ++i) {{')
            body += fill_value(f, msg, 'v[i]', 'seed * 3 + i + 1', k, 6)
            body.append(f'    }}')
            body.append(f'    m->{f.member} = std::move(v);')
            body.append(f'  }}')
        else:
            body += fill_value(f, msg, f'm->{f.member}', 'seed', k, 2)
        out += guarded(range_cond(f.versions, msg), body, 2)
    out += ['}', '']
    return out


def emit_testing(all_messages):
    api_msgs = [m for m in all_messages if m.kind != 'data']
    data_msgs = [m for m in all_messages if m.kind == 'data']
    h = ['// Generated by net/kafka/gen/kafka_gen.py. Do not edit.',
         '// Test support: messages with every field present in a version set to a value that',
         '// differs from its default, so that a round trip exercises every field.',
         '#pragma once', '',
         '#include <cstdint>', '',
         '#include "net/kafka/messages/registry.h"', '',
         'namespace sluice::kafka {', '']
    for m in all_messages:
        h.append(f'void FillForTest({m.cpp_name}* m, int16_t version, uint32_t seed);')
    h += ['',
          '// A request/response of `api_key` filled as above; monostate for unknown keys.',
          'AnyRequest MakeTestRequest(int16_t api_key, int16_t version, uint32_t seed);',
          'AnyResponse MakeTestResponse(int16_t api_key, int16_t version, uint32_t seed);', '',
          '}  // namespace sluice::kafka', '']
    c = ['// Generated by net/kafka/gen/kafka_gen.py. Do not edit.',
         '#include "net/kafka/messages/testing.h"', '',
         '#include <span>', '#include <string>', '#include <utility>', '#include <vector>', '',
         '#include "absl/strings/str_cat.h"', '',
         'namespace sluice::kafka {', 'namespace {', '',
         'std::span<const uint8_t> TestRecordBytes() {',
         '  static constexpr uint8_t kBytes[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};',
         '  return kBytes;', '}', '']
    for m in all_messages:
        for s in m.structs():
            c.append(f'void Fill({m.cpp_name}::{s.name}* m, int16_t version, uint32_t seed);')
    c.append('')
    for m in all_messages:
        for s in m.structs():
            c += fill_struct(f'{m.cpp_name}::{s.name}', s.fields, m)
    c += ['}  // namespace', '']
    for m in all_messages:
        body = fill_struct(m.cpp_name, m.fields, m)
        body[0] = f'void FillForTest({m.cpp_name}* m, int16_t version, uint32_t seed) {{'
        c += body
    for kind, any_t in (('request', 'AnyRequest'), ('response', 'AnyResponse')):
        c += [f'{any_t} MakeTest{kind.capitalize()}(int16_t api_key, int16_t version, '
              'uint32_t seed) {',
              '  switch (api_key) {']
        for m in sorted([m for m in api_msgs if m.kind == kind], key=lambda m: m.key):
            c += [f'    case {m.key}: {{',
                  f'      {m.cpp_name} m;',
                  '      FillForTest(&m, version, seed);',
                  '      return m;',
                  '    }']
        c += ['    default:', f'      return {any_t}();', '  }', '}', '']
    c += ['}  // namespace sluice::kafka', '']
    return h, c


# ----------------------------------------------------------------------------------------------
# Registry


def emit_registry(all_messages, stems):
    reqs = sorted([m for m in all_messages if m.kind == 'request'], key=lambda m: m.key)
    resps = {m.key: m for m in all_messages if m.kind == 'response'}
    for m in reqs:
        r = resps.get(m.key)
        if r is None or r.versions != m.versions or r.flexible != m.flexible:
            raise DefError(f'{m.source}: request and response disagree')
    h = ['// Generated by net/kafka/gen/kafka_gen.py. Do not edit.',
         '// Every API this codec supports: the version table (for ApiVersions) and variants of',
         '// all requests and responses with dispatch by api key.',
         '#pragma once', '',
         '#include <array>', '#include <cstdint>', '#include <string_view>', '#include <type_traits>',
         '#include <variant>',
         '']
    for s in stems:
        h.append(f'#include "net/kafka/messages/{s}.h"')
    h += ['#include "absl/status/status.h"', '#include "net/kafka/wire.h"', '',
          'namespace sluice::kafka {', '',
          'enum class ApiKey : int16_t {']
    for m in reqs:
        h.append(f'  k{m.api} = {m.key},')
    h += ['};', '',
          'struct ApiInfo {',
          '  int16_t api_key;',
          '  int16_t min_version;',
          '  int16_t max_version;',
          '  int16_t first_flexible_version;  // -1: no flexible version supported',
          '  std::string_view name;',
          '};', '',
          '// Supported APIs, sorted by api key.',
          f'inline constexpr std::array<ApiInfo, {len(reqs)}> kSupportedApis = {{{{']
    for m in reqs:
        flex = m.flexible if m.flexible is not None and m.flexible <= m.versions[1] else -1
        h.append(f'    {{{m.key}, {m.versions[0]}, {m.versions[1]}, {flex}, "{m.api}"}},')
    h += ['}};', '',
          '// The entry for `api_key`, or nullptr when the API is not supported.',
          'const ApiInfo* FindApi(int16_t api_key);',
          '// Whether `version` of the API uses flexible encodings (tagged fields, compact',
          '// lengths). False for unknown APIs and versions below the first flexible one.',
          'bool IsFlexibleVersion(int16_t api_key, int16_t version);', '',
          '// One decoded request or response of any supported API; monostate when empty.',
          'using AnyRequest = std::variant<std::monostate']
    h += [f'                                , {m.cpp_name}' for m in reqs]
    h[-1] += '>;'
    h.append('using AnyResponse = std::variant<std::monostate')
    h += [f'                                 , {resps[m.key].cpp_name}' for m in reqs]
    h[-1] += '>;'
    h += ['',
          '// The response type answering a request type: ResponseFor<ProduceRequest> is',
          '// ProduceResponse.',
          'template <typename Request>',
          'struct ResponseTypeOf;']
    for m in reqs:
        h += ['template <>',
              f'struct ResponseTypeOf<{m.cpp_name}> {{',
              f'  using type = {resps[m.key].cpp_name};',
              '};']
    h += ['template <typename Request>',
          'using ResponseFor = typename ResponseTypeOf<Request>::type;', '',
          '// The api key of the held message, or -1 for monostate.',
          'int16_t ApiKeyOf(const AnyRequest& request);',
          'int16_t ApiKeyOf(const AnyResponse& response);', '',
          '// Decodes a body of `api_key` at `version` into `out`. Fails with kNotFound for an',
          '// unknown api key, kInvalidArgument for an unsupported version, otherwise with the',
          '// decoder\'s error.',
          'absl::Status DecodeRequestBody(int16_t api_key, int16_t version, Reader& r,',
          '                               AnyRequest* out);',
          'absl::Status DecodeResponseBody(int16_t api_key, int16_t version, Reader& r,',
          '                                AnyResponse* out);',
          '// Encodes the held message at `version` (nothing for monostate).',
          'void EncodeRequestBody(const AnyRequest& request, int16_t version, Writer& w);',
          'void EncodeResponseBody(const AnyResponse& response, int16_t version, Writer& w);', '',
          '}  // namespace sluice::kafka', '']
    c = ['// Generated by net/kafka/gen/kafka_gen.py. Do not edit.',
         '#include "net/kafka/messages/registry.h"', '',
         '#include "absl/strings/str_cat.h"', '',
         'namespace sluice::kafka {', '',
         'const ApiInfo* FindApi(int16_t api_key) {',
         '  for (const ApiInfo& api : kSupportedApis) {',
         '    if (api.api_key == api_key) return &api;',
         '  }',
         '  return nullptr;',
         '}', '',
         'bool IsFlexibleVersion(int16_t api_key, int16_t version) {',
         '  const ApiInfo* api = FindApi(api_key);',
         '  return api != nullptr && api->first_flexible_version >= 0 &&',
         '         version >= api->first_flexible_version;',
         '}', '']
    for any_t in ('AnyRequest', 'AnyResponse'):
        c += [f'int16_t ApiKeyOf(const {any_t}& message) {{',
              '  return std::visit(',
              '      [](const auto& m) -> int16_t {',
              '        if constexpr (std::is_same_v<std::decay_t<decltype(m)>, std::monostate>) {',
              '          return -1;',
              '        } else {',
              '          return std::decay_t<decltype(m)>::kApiKey;',
              '        }',
              '      },',
              '      message);',
              '}', '']
    for kind, any_t in (('Request', 'AnyRequest'), ('Response', 'AnyResponse')):
        c += [f'absl::Status Decode{kind}Body(int16_t api_key, int16_t version, Reader& r,',
              f'                         {any_t}* out) {{',
              '  switch (api_key) {']
        for m in reqs:
            name = m.cpp_name if kind == 'Request' else resps[m.key].cpp_name
            c += [f'    case {m.key}:',
                  f'      return out->emplace<{name}>().Decode(r, version);']
        c += ['    default:',
              '      return absl::NotFoundError(absl::StrCat("unknown api key ", api_key));',
              '  }',
              '}', '',
              f'void Encode{kind}Body(const {any_t}& message, int16_t version, Writer& w) {{',
              '  std::visit(',
              '      [&](const auto& m) {',
              '        if constexpr (!std::is_same_v<std::decay_t<decltype(m)>, std::monostate>) {',
              '          m.Encode(w, version);',
              '        }',
              '      },',
              '      message);',
              '}', '']
    c += ['}  // namespace sluice::kafka', '']
    return h, c


def write_if_changed(path, lines):
    text = '\n'.join(lines)
    if os.path.exists(path):
        with open(path, encoding='utf-8') as f:
            if f.read() == text:
                return
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', required=True, help='output directory')
    ap.add_argument('--source-root', default=None, help='for relative paths in comments')
    ap.add_argument('defs', nargs='+')
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    all_messages = []
    stems = []
    try:
        for path in sorted(args.defs):
            stem = os.path.splitext(os.path.basename(path))[0]
            rel = os.path.relpath(path, args.source_root) if args.source_root else path
            messages = parse_def(path)
            stems.append(stem)
            all_messages += messages
            write_if_changed(os.path.join(args.out, stem + '.h'),
                             emit_header(stem, messages, rel))
            write_if_changed(os.path.join(args.out, stem + '.cc'),
                             emit_source(stem, messages, rel))
        rh, rc = emit_registry(all_messages, stems)
        write_if_changed(os.path.join(args.out, 'registry.h'), rh)
        write_if_changed(os.path.join(args.out, 'registry.cc'), rc)
        th, tc = emit_testing(all_messages)
        write_if_changed(os.path.join(args.out, 'testing.h'), th)
        write_if_changed(os.path.join(args.out, 'testing.cc'), tc)
    except DefError as e:
        print(f'kafka_gen: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
