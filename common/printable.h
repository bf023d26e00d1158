// Printable(): text from outside (a data line, a peer's error message) made
// safe to log and to put in a Protobuf string field. Protobuf refuses to
// parse a string field that is not valid UTF-8, so an error quoting a bad
// input line would make its whole message undecodable; and raw control
// bytes in a log would act on the reader's terminal.
//
// Stateless functions; thread-safe.
#ifndef SPARTA_COMMON_PRINTABLE_H_
#define SPARTA_COMMON_PRINTABLE_H_

#include <string>
#include <string_view>

namespace sparta {

// True if `text` is valid UTF-8 (no overlong forms, no surrogates).
bool IsValidUtf8(std::string_view text);

// `text` with every byte that is not part of a valid UTF-8 sequence, and
// every control character but tab, shown as \xNN. Valid UTF-8 without
// control characters comes back unchanged.
std::string Printable(std::string_view text);

}  // namespace sparta

#endif  // SPARTA_COMMON_PRINTABLE_H_
