#include "src/amqp/routing.h"

#include <vector>

#include "absl/strings/str_split.h"

namespace sluice::amqp {

std::optional<ExchangeType> ParseExchangeType(std::string_view name) {
  if (name == "direct") return ExchangeType::kDirect;
  if (name == "fanout") return ExchangeType::kFanout;
  if (name == "topic") return ExchangeType::kTopic;
  if (name == "headers") return ExchangeType::kHeaders;
  return std::nullopt;
}

std::string_view ExchangeTypeName(ExchangeType type) {
  switch (type) {
    case ExchangeType::kDirect:
      return "direct";
    case ExchangeType::kFanout:
      return "fanout";
    case ExchangeType::kTopic:
      return "topic";
    case ExchangeType::kHeaders:
      return "headers";
  }
  return "direct";
}

bool TopicMatches(std::string_view pattern, std::string_view routing_key) {
  std::vector<absl::string_view> p =
      absl::StrSplit(absl::string_view(pattern.data(), pattern.size()), '.');
  std::vector<absl::string_view> k =
      absl::StrSplit(absl::string_view(routing_key.data(), routing_key.size()), '.');
  // An empty key has zero words (RabbitMQ), not one empty word; same for the pattern.
  if (routing_key.empty()) k.clear();
  if (pattern.empty()) p.clear();
  // reach[j]: the first i pattern words can match the first j key words.
  std::vector<char> reach(k.size() + 1, 0), next(k.size() + 1, 0);
  reach[0] = 1;
  for (const absl::string_view& word : p) {
    std::fill(next.begin(), next.end(), 0);
    if (word == "#") {
      char any = 0;
      for (size_t j = 0; j <= k.size(); ++j) {
        any |= reach[j];
        next[j] = any;
      }
    } else {
      for (size_t j = 0; j < k.size(); ++j) {
        if (reach[j] && (word == "*" || word == k[j])) next[j + 1] = 1;
      }
    }
    reach.swap(next);
  }
  return reach[k.size()] != 0;
}

namespace {

bool ValuesEqual(const FieldValue& a, const FieldValue& b) {
  // Clients pick different integer widths for the same value; RabbitMQ compares values.
  std::optional<int64_t> ia = a.AsInt64(), ib = b.AsInt64();
  if (ia && ib) return *ia == *ib;
  const std::string* sa = a.AsString();
  const std::string* sb = b.AsString();
  if (sa && sb) return *sa == *sb;
  return a == b;
}

}  // namespace

bool HeadersMatch(const FieldTable& binding_args, const FieldTable* headers) {
  bool any = false;
  bool with_x = false;
  if (const FieldValue* m = binding_args.Find("x-match")) {
    if (const std::string* s = m->AsString()) {
      any = *s == "any" || *s == "any-with-x";
      with_x = *s == "all-with-x" || *s == "any-with-x";
    }
  }
  for (const FieldEntry& e : binding_args.entries()) {
    if (e.name == "x-match") continue;
    if (!with_x && e.name.rfind("x-", 0) == 0) continue;
    const FieldValue* h = headers ? headers->Find(e.name) : nullptr;
    bool ok = h != nullptr && (e.value.is<Void>() || ValuesEqual(e.value, *h));
    if (any && ok) return true;
    if (!any && !ok) return false;
  }
  // all: every (possibly zero) binding key matched; any: none did.
  return !any;
}

bool BindingMatches(ExchangeType type, std::string_view binding_key, const FieldTable& binding_args,
                    std::string_view routing_key, const FieldTable* headers) {
  switch (type) {
    case ExchangeType::kDirect:
      return binding_key == routing_key;
    case ExchangeType::kFanout:
      return true;
    case ExchangeType::kTopic:
      return TopicMatches(binding_key, routing_key);
    case ExchangeType::kHeaders:
      return HeadersMatch(binding_args, headers);
  }
  return false;
}

}  // namespace sluice::amqp
