// Protobuf messages as JSON files: the files Sparta writes for people and
// scripts to read (checkpoint manifests, summary.json), written as data
// through Protobuf's JSON mapping rather than by hand, with the .proto
// field names, every field shown (zeros and empty lists too), and replaced
// atomically (a reader never sees half a file).
//
// Stateless functions; thread-safe.
#ifndef SPARTA_COMMON_PROTO_JSON_H_
#define SPARTA_COMMON_PROTO_JSON_H_

#include <string>

#include <google/protobuf/message.h>

#include "absl/status/status.h"

namespace sparta {

// Writes `message` to `path` (through `path`.tmp and a rename).
absl::Status WriteProtoJson(const std::string& path, const google::protobuf::Message& message);

// Reads `path` into `message`. NotFound if it is missing, DataLoss if it is
// not a valid JSON encoding of the message (both name the file).
absl::Status ReadProtoJson(const std::string& path, google::protobuf::Message* message);

}  // namespace sparta

#endif  // SPARTA_COMMON_PROTO_JSON_H_
