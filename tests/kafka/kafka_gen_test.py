#!/usr/bin/env python3
"""Checks that net/kafka/gen/kafka_gen.py accepts well-formed definitions and rejects the
mistakes a definition author is likely to make, with a message naming the line."""

import importlib.util
import os
import sys
import tempfile
import unittest

GEN = os.path.join(os.path.dirname(__file__), '..', '..', 'net', 'kafka', 'gen', 'kafka_gen.py')
spec = importlib.util.spec_from_file_location('kafka_gen', GEN)
kafka_gen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kafka_gen)

GOOD = """\
# a comment
api Thing key=99 versions=0-3 flexible=2+
request
  Name          string        0+
  Ids           []int32       1+    null=1+
  Entries       []Entry       0+
    Key         string        0+
    Value       bytes         0+    null=2+ default=null
  Cluster       string        2+    null=2+ tag=0 default=null
  Epoch         int32         0+    default=-2147483648
response
  ErrorCode     int16         0+
"""


def parse(text):
    with tempfile.NamedTemporaryFile('w', suffix='.def', delete=False) as f:
        f.write(text)
    try:
        return kafka_gen.parse_def(f.name)
    finally:
        os.unlink(f.name)


class ParseTest(unittest.TestCase):
    def test_good_definition(self):
        req, resp = parse(GOOD)
        self.assertEqual(req.cpp_name, 'ThingRequest')
        self.assertEqual(resp.cpp_name, 'ThingResponse')
        self.assertEqual(req.flexible, 2)
        self.assertEqual([f.member for f in req.fields],
                         ['name', 'ids', 'entries', 'cluster', 'epoch'])
        self.assertEqual([s.name for s in req.structs()], ['Entry'])
        self.assertEqual(req.fields[3].tag, 0)
        self.assertEqual(kafka_gen.cpp_type(req.fields[1]), 'std::optional<std::vector<int32_t>>')
        self.assertEqual(kafka_gen.default_init(req.fields[4]),
                         'std::numeric_limits<int32_t>::min()')

    def test_version_conditions_are_simplified_against_the_message_range(self):
        req, _ = parse(GOOD)
        self.assertEqual(kafka_gen.range_cond((0, kafka_gen.INF), req), 'true')
        self.assertEqual(kafka_gen.range_cond((1, kafka_gen.INF), req), 'version >= 1')
        self.assertEqual(kafka_gen.range_cond((1, 2), req), 'version >= 1 && version <= 2')
        self.assertEqual(kafka_gen.range_cond((5, 7), req), 'false')

    def test_snake_case_names(self):
        self.assertEqual(kafka_gen.snake('ThrottleTimeMs'), 'throttle_time_ms')
        self.assertEqual(kafka_gen.snake('TopicId'), 'topic_id')
        self.assertEqual(kafka_gen.snake('Default'), 'default_value')

    def assertRejected(self, text, fragment):
        with self.assertRaises(kafka_gen.DefError) as ctx:
            parse(text)
        self.assertIn(fragment, str(ctx.exception))
        self.assertRegex(str(ctx.exception), r'\.def:\d+')

    def test_tagged_field_outside_flexible_versions(self):
        self.assertRejected(GOOD.replace('2+    null=2+ tag=0', '1+    null=1+ tag=0'),
                            'tagged field outside flexible versions')

    def test_nullable_integer(self):
        self.assertRejected(GOOD.replace('ErrorCode     int16         0+',
                                         'ErrorCode     int16         0+  null=0+'),
                            'only strings, bytes, records and arrays are nullable')

    def test_default_null_on_non_nullable_field(self):
        self.assertRejected(GOOD.replace('Name          string        0+',
                                         'Name          string        0+ default=null'),
                            'default null on a non-nullable field')

    def test_struct_without_fields(self):
        self.assertRejected(GOOD.replace('    Key         string        0+\n', '')
                            .replace('    Value       bytes         0+    null=2+ default=null\n',
                                     ''),
                            'has no fields')

    def test_duplicate_field(self):
        self.assertRejected(GOOD.replace('response\n', 'response\n  ErrorCode int16 0+\n'),
                            'duplicate field ErrorCode')

    def test_bad_versions(self):
        self.assertRejected(GOOD.replace('Ids           []int32       1+',
                                         'Ids           []int32       3-1'),
                            'empty version range')
        self.assertRejected(GOOD.replace('versions=0-3', 'versions=0+'), 'closed range')

    def test_field_outside_a_message(self):
        self.assertRejected('  Name string 0+\n', 'field outside a message')

    def test_unknown_attribute(self):
        self.assertRejected(GOOD.replace('default=-2147483648', 'dflt=1'), 'unknown attribute')

    def test_default_out_of_range(self):
        self.assertRejected(GOOD.replace('default=-2147483648', 'default=2147483648'),
                            'out of range')

    def test_generates_every_file(self):
        with tempfile.TemporaryDirectory() as out:
            path = os.path.join(out, 'thing.def')
            with open(path, 'w') as f:
                f.write(GOOD)
            sys.argv = ['kafka_gen.py', '--out', out, path]
            self.assertEqual(kafka_gen.main(), 0)
            for name in ('thing.h', 'thing.cc', 'registry.h', 'registry.cc', 'testing.h',
                         'testing.cc'):
                self.assertTrue(os.path.exists(os.path.join(out, name)), name)
            with open(os.path.join(out, 'thing.h')) as f:
                header = f.read()
            self.assertIn('struct ThingRequest {', header)
            self.assertIn('std::optional<std::string> cluster;  // v2+, nullable v2+, tag 0',
                          header)


if __name__ == '__main__':
    unittest.main()
