#include "common/proto_json.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"

namespace sparta {

absl::Status WriteProtoJson(const std::string& path, const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options).ok()) {
    return absl::InternalError(absl::StrCat("cannot encode ", path, " as JSON"));
  }
  const std::string tmp = path + ".tmp";
  std::ofstream out(tmp);
  out << json;
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", tmp, ": ", std::strerror(errno)));
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot rename ", tmp, " to ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status ReadProtoJson(const std::string& path, google::protobuf::Message* message) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  std::stringstream text;
  text << in.rdbuf();
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // written by a newer version
  if (!google::protobuf::util::JsonStringToMessage(text.str(), message, options).ok()) {
    return absl::DataLossError(absl::StrCat(path, ": not a valid ", message->GetDescriptor()->name(), " (JSON)"));
  }
  return absl::OkStatus();
}

}  // namespace sparta
