// Exchange routing rules of AMQP 0-9-1 as RabbitMQ applies them: direct, fanout, topic
// (words separated by '.', '*' = exactly one word, '#' = zero or more words) and headers
// (x-match all / any, keys starting with "x-" ignored, a void binding value matches any value).
//
// Pure functions over names and tables: no broker state, unit-tested in
// tests/broker/amqp_routing_test.cc.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "net/amqp/field_table.h"

namespace sluice::amqp {

enum class ExchangeType { kDirect, kFanout, kTopic, kHeaders };

// "direct", "fanout", "topic", "headers"; nullopt for anything else (e.g. x-delayed-message).
std::optional<ExchangeType> ParseExchangeType(std::string_view name);
std::string_view ExchangeTypeName(ExchangeType type);

// True if `routing_key` matches the topic binding `pattern`. Runs in O(words(pattern) *
// words(key)) whatever the number of '#' (no backtracking blow-up).
bool TopicMatches(std::string_view pattern, std::string_view routing_key);

// True if a message with `headers` matches a headers-exchange binding with `binding_args`.
// x-match: "all" (default) or "any"; "all-with-x" / "any-with-x" also compare x- keys.
bool HeadersMatch(const FieldTable& binding_args, const FieldTable* headers);

// Whether a binding with (binding_key, binding_args) on an exchange of `type` takes a message.
bool BindingMatches(ExchangeType type, std::string_view binding_key, const FieldTable& binding_args,
                    std::string_view routing_key, const FieldTable* headers);

}  // namespace sluice::amqp
