#include "common/curve_keys.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include <zmq.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace sparta {
namespace {

constexpr size_t kZ85KeyChars = 40;

bool IsZ85Key(const std::string& text) {
  if (text.size() != kZ85KeyChars) return false;
  uint8_t raw[32];
  return zmq_z85_decode(raw, text.c_str()) != nullptr;
}

}  // namespace

absl::StatusOr<CurveKeyPair> NewCurveKeyPair() {
  if (!zmq_has("curve")) return absl::UnimplementedError("this libzmq was built without CURVE security");
  char pub[kZ85KeyChars + 1], sec[kZ85KeyChars + 1];
  if (zmq_curve_keypair(pub, sec) != 0) {
    return absl::InternalError(absl::StrCat("zmq_curve_keypair failed: ", zmq_strerror(zmq_errno())));
  }
  return CurveKeyPair{pub, sec};
}

absl::StatusOr<CurveKeyPair> ReadCurveKeyFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read key file '", path, "': ", std::strerror(errno)));
  CurveKeyPair keys;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text[0] == '#') continue;
    std::string* slot = nullptr;
    if (absl::ConsumePrefix(&text, "public-key:")) slot = &keys.public_key;
    else if (absl::ConsumePrefix(&text, "secret-key:")) slot = &keys.secret_key;
    if (slot == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", number, ": expected 'public-key:' or 'secret-key:'"));
    }
    *slot = std::string(absl::StripAsciiWhitespace(text));
    if (!IsZ85Key(*slot)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", number, ": not a 40-character Z85 CurveZMQ key"));
    }
  }
  if (keys.public_key.empty() || keys.secret_key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": needs both public-key and secret-key"));
  }
  char derived[kZ85KeyChars + 1];
  if (zmq_curve_public(derived, keys.secret_key.c_str()) != 0 || keys.public_key != derived) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": the public key does not belong to the secret key"));
  }
  return keys;
}

absl::Status WriteCurveKeyFile(const std::string& path, const CurveKeyPair& keys) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return absl::AlreadyExistsError(absl::StrCat("cannot create '", path, "': ", std::strerror(errno)));
  const std::string text = absl::StrCat(
      "# Sparta cluster key (CurveZMQ). Every node and operator of the cluster needs this file\n"
      "# (cluster.auth: curve, cluster.key_file: <this file>); anyone who has it can join. Keep it secret.\n",
      "public-key: ", keys.public_key, "\nsecret-key: ", keys.secret_key, "\n");
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  const bool closed = ::close(fd) == 0;
  if (!ok || !closed) return absl::UnavailableError(absl::StrCat("cannot write '", path, "'"));
  return absl::OkStatus();
}

}  // namespace sparta
