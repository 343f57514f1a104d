#include "net/amqp/content.h"

#include "absl/strings/str_cat.h"
#include "net/amqp/reply_codes.h"
#include "net/amqp/wire.h"

namespace sluice::amqp {

absl::StatusOr<ContentHeaderView> PeekContentHeader(std::string_view payload) {
  WireReader r(payload);
  ContentHeaderView view;
  view.class_id = r.Short();
  view.weight = r.Short();
  view.body_size = r.LongLong();
  if (!r.ok()) {
    return AmqpError(ReplyCode::kSyntaxError, absl::StrCat("content header of ", payload.size(),
                                                           " bytes (at least 14 needed)"));
  }
  view.encoded_properties = payload.substr(r.position());
  return view;
}

absl::StatusOr<ContentHeader> DecodeContentHeader(std::string_view payload) {
  absl::StatusOr<ContentHeaderView> view = PeekContentHeader(payload);
  if (!view.ok()) return view.status();
  if (view->class_id != BasicProperties::kClassId) {
    return AmqpError(
        ReplyCode::kCommandInvalid,
        absl::StrCat("content header for class ", view->class_id, ", which carries no content"));
  }
  absl::StatusOr<BasicProperties> properties = BasicProperties::Decode(view->encoded_properties);
  if (!properties.ok()) return properties.status();
  ContentHeader header;
  header.class_id = view->class_id;
  header.weight = view->weight;
  header.body_size = view->body_size;
  header.properties = *std::move(properties);
  return header;
}

absl::Status EncodeContentHeader(const ContentHeader& header, std::string* out) {
  WireWriter w(out);
  w.Short(header.class_id);
  w.Short(header.weight);
  w.LongLong(header.body_size);
  return header.properties.Encode(out);
}

}  // namespace sluice::amqp
