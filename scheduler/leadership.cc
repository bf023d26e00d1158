#include "scheduler/leadership.h"

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace sparta {

Leadership::Leadership(EtcdClient* etcd, std::string prefix, std::string self, int64_t ttl)
    : etcd_(etcd), prefix_(std::move(prefix)), self_(std::move(self)), ttl_(ttl) {}

namespace {

etcd::Compare CompareCreate(const std::string& key, int64_t revision) {
  etcd::Compare c;
  c.set_key(key);
  c.set_target(etcd::Compare::CREATE);
  c.set_result(etcd::Compare::EQUAL);
  c.set_create_revision(revision);
  return c;
}

}  // namespace

absl::StatusOr<Leadership::Outcome> Leadership::Campaign(const std::function<bool()>& stop, std::string* ended,
                                                        std::chrono::duration<double> give_up) {
  // A standby looks a few times per lease: a dead leader's place is taken
  // within about the lease's TTL.
  const auto poll = std::chrono::milliseconds(std::clamp<int64_t>(ttl_ * 1000 / 10, 50, 500));
  Clock::time_point answered = Clock::now();  // etcd's last answer
  bool complained = false;
  while (!stop()) {
    auto outcome = TryToLead(ended);
    if (outcome.ok() && outcome->has_value()) return **outcome;
    if (outcome.ok()) {
      answered = Clock::now();
      complained = false;
    } else if (Clock::now() - answered > give_up) {
      return absl::UnavailableError(absl::StrCat("no answer from etcd for ", give_up.count(),
                                                 " s (cluster.scheduler_grace): ", outcome.status().message()));
    } else if (!complained) {
      // A standby rides out a slow or restarting etcd: it is not needed yet.
      spdlog::warn("standing by: etcd did not answer (trying again for up to {} s): {}", give_up.count(),
                   outcome.status().message());
      complained = true;
    }
    std::this_thread::sleep_for(poll);
  }
  return Outcome::kStopped;
}

absl::StatusOr<std::optional<Leadership::Outcome>> Leadership::TryToLead(std::string* ended) {
  auto leader = etcd_->Get(Key("leader"));
  if (!leader.ok()) return leader.status();
  if (since_ == 0) since_ = etcd_->revision();
  // Read after the leader key: a leader that ended removed its key and
  // wrote `ended` in one transaction, so this sees the end if it happened.
  auto end = etcd_->Get(Key("ended"));
  if (!end.ok()) return end.status();
  if (end->has_value() && (*end)->mod_revision() > since_) {
    *ended = (*end)->value();
    return std::optional<Outcome>(Outcome::kJobEnded);
  }
  if (leader->has_value()) {
    if ((*leader)->value() != leader_seen_) {
      leader_seen_ = (*leader)->value();
      spdlog::info("standing by: the scheduler at {} leads (etcd key {})", leader_seen_, Key("leader"));
    }
    return std::optional<Outcome>();
  }
  // No leader: try to become it, unless one appeared or the job ended
  // since these reads.
  const Clock::time_point asked = Clock::now();
  auto lease = etcd_->GrantLease(ttl_);
  if (!lease.ok()) return lease.status();
  etcd::TxnRequest txn;
  *txn.add_compare() = CompareCreate(Key("leader"), 0);
  etcd::Compare* not_ended = txn.add_compare();
  not_ended->set_key(Key("ended"));
  not_ended->set_target(etcd::Compare::MOD);
  not_ended->set_result(etcd::Compare::LESS);
  not_ended->set_mod_revision(since_ + 1);
  etcd::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(Key("leader"));
  put->set_value(self_);
  put->set_lease(lease->id());
  auto won = etcd_->Txn(txn);
  if (!won.ok() || !won->succeeded()) {
    (void)etcd_->Revoke(lease->id());
    if (!won.ok()) return won.status();
    return std::optional<Outcome>();
  }
  lease_ = lease->id();
  granted_ttl_ = lease->ttl();
  term_ = won->header().revision();
  renewed_ = asked;
  spdlog::info("leading the job (etcd key {}, lease of {} s, term {})", Key("leader"), granted_ttl_, term_);
  return std::optional<Outcome>(Outcome::kLeading);
}

absl::Status Leadership::Renew(Clock::time_point now) {
  const auto lease = std::chrono::seconds(granted_ttl_);
  if (now - renewed_ < lease / 3) return absl::OkStatus();
  auto ttl = etcd_->KeepAlive(lease_);
  if (ttl.ok() && *ttl > 0) {
    renewed_ = now;
    return absl::OkStatus();
  }
  if (ttl.ok()) return absl::FailedPreconditionError("the leader's etcd lease has expired: another scheduler may lead");
  // Unreachable etcd: keep trying while the lease surely lasts; stop well
  // before it may expire, since a standby may take over then.
  if (now - renewed_ < lease * 2 / 3) {
    spdlog::warn("cannot renew the leader's etcd lease (trying again): {}", ttl.status().message());
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(
      absl::StrCat("could not renew the leader's etcd lease for ", granted_ttl_ * 2 / 3.0,
                   " s; another scheduler may lead now. Last error: ", ttl.status().message()));
}

void Leadership::Guard(etcd::TxnRequest* txn) const { *txn->add_compare() = CompareCreate(Key("leader"), term_); }

absl::Status Leadership::End(const std::string& outcome) {
  etcd::TxnRequest txn;
  Guard(&txn);
  etcd::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(Key("ended"));
  put->set_value(outcome);
  txn.add_success()->mutable_request_delete_range()->set_key(Key("leader"));
  auto done = etcd_->Txn(txn);
  if (!done.ok()) return done.status();
  if (!done->succeeded()) return absl::FailedPreconditionError("another scheduler leads: the job's end was not recorded");
  (void)etcd_->Revoke(lease_);
  return absl::OkStatus();
}

}  // namespace sparta
