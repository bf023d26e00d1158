// InstanceFields: a prediction instance given as a JSON object of named
// fields, turned into the input line the job's reader parses, so that an
// object and the equivalent line are one path and give one prediction.
//
//   criteo:  {"I1": 3, "I2": null, "C1": "68fd1e64", ...}: the columns by
//            Criteo's names (I1-I13 integers, C1-C26 hexadecimal tokens);
//            a column left out, or null, is a missing value; "label" is
//            optional and ignored by the prediction.
//   libsvm:  {"3": 1, "17": 0.25}: feature index -> value; "label" as above.
//
// A reader plugin's records have no field names Sparta knows: its
// instances are lines. Stateless functions; thread-safe.
#ifndef SPARTA_WORKER_SERVING_INSTANCE_FIELDS_H_
#define SPARTA_WORKER_SERVING_INSTANCE_FIELDS_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace google::protobuf {
class Struct;
}

namespace sparta {

// `format`: data.format ("criteo" or "libsvm"), or "" for a reader plugin
// (always an error). The error says which field is wrong and why.
absl::StatusOr<std::string> InstanceFieldsToLine(std::string_view format, const google::protobuf::Struct& fields);

}  // namespace sparta

#endif  // SPARTA_WORKER_SERVING_INSTANCE_FIELDS_H_
