// Curve key files: the cluster's CurveZMQ key pair as a small text file.
//
//   # Sparta cluster key (CurveZMQ) ...
//   public-key: <40 Z85 characters>
//   secret-key: <40 Z85 characters>
//
// `sparta-ctl keygen FILE` writes one (mode 0600); cluster.key_file names it.
// Whoever holds the file can join the cluster, so it is a secret shared by
// the cluster's nodes and its operators, like a cluster token. Stateless
// functions; thread-safe.
#ifndef SPARTA_COMMON_CURVE_KEYS_H_
#define SPARTA_COMMON_CURVE_KEYS_H_

#include <string>

#include "absl/status/statusor.h"

namespace sparta {

struct CurveKeyPair {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;  // Z85, 40 characters
};

// A fresh key pair from libzmq's CSPRNG. Fails if libzmq lacks CURVE.
absl::StatusOr<CurveKeyPair> NewCurveKeyPair();

// Reads and checks a key file: both keys present and well-formed, and the
// public key is the one the secret key implies.
absl::StatusOr<CurveKeyPair> ReadCurveKeyFile(const std::string& path);

// Writes `keys` to `path` (mode 0600); refuses to overwrite a file.
absl::Status WriteCurveKeyFile(const std::string& path, const CurveKeyPair& keys);

}  // namespace sparta

#endif  // SPARTA_COMMON_CURVE_KEYS_H_
