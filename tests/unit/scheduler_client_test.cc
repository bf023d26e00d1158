// SchedulerClient against a scheduler the test plays on a real ROUTER
// socket: what a worker tells a scheduler that takes over.
#include <chrono>
#include <future>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <zmq.hpp>

#include "common/config.h"
#include "common/message.h"
#include "common/scheduler_client.h"

namespace sparta::scheduler_client_test {
namespace {

// The scheduler's side: one ROUTER on a free loopback port.
struct FakeScheduler {
  FakeScheduler() : router(context, zmq::socket_type::router) {
    router.bind("tcp://127.0.0.1:*");
    const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
    address = endpoint.substr(endpoint.find("//") + 2);
  }

  // The next message of `type` from the client (20 s at most); the others
  // that came first, heartbeats aside, are added to `before`.
  Message Next(pb::MsgType type, std::vector<pb::Header>* before = nullptr) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(100));
      while (true) {
        auto got = ReceiveMessage(router, /*from_router=*/true);
        REQUIRE(got.ok());
        if (!got->has_value()) break;
        Message& m = **got;
        if (m.header.type() == type) {
          if (!client_id.has_value()) client_id.emplace(m.routing_id->data(), m.routing_id->size());
          return std::move(m);
        }
        if (m.header.type() != pb::HEARTBEAT && before != nullptr) before->push_back(m.header);
      }
    }
    FAIL("no " << MsgTypeName(type) << " from the client within 20 s");
    return {};
  }

  void Send(const pb::Header& h) {
    REQUIRE(client_id.has_value());
    REQUIRE(SendMessage(router, h, nullptr, &*client_id).ok());
  }

  // A heartbeat echo from scheduler incarnation `incarnation`.
  void Incarnation(uint64_t incarnation) {
    pb::Header h;
    h.set_type(pb::HEARTBEAT);
    h.set_seq(incarnation);
    Send(h);
  }

  void Grant(uint64_t request_seq, uint64_t unit) {
    pb::Header grant;
    grant.set_type(pb::WORK_GRANT);
    grant.set_seq(request_seq);
    grant.mutable_work()->set_id(unit);
    grant.mutable_work()->set_path("data.txt");
    grant.mutable_work()->set_end(100);
    Send(grant);
  }

  zmq::context_t context;
  zmq::socket_t router;
  std::string address;
  std::optional<zmq::message_t> client_id;
};

TEST_CASE("a worker resends to a scheduler that takes over only the units done since its last grant",
          "[scheduler_client]") {
  FakeScheduler scheduler;
  Config config;
  config.cluster.scheduler = scheduler.address;
  pb::NodeInfo self;
  self.set_role(pb::WORKER);
  self.set_rank(-1);
  zmq::context_t context;
  SchedulerClient client(&context, config, self, {});

  auto registered = std::async(std::launch::async, [&] { return client.Register(); });
  scheduler.Next(pb::REGISTER);
  pb::Header reply;
  reply.set_type(pb::REGISTER_REPLY);
  reply.mutable_node()->set_id(7);
  reply.mutable_node()->set_rank(0);
  scheduler.Send(reply);
  REQUIRE(registered.get().ok());
  scheduler.Incarnation(1);

  // Units 1 and 2 done, then a request: its grant comes only after the
  // scheduler saved both, so the worker forgets them.
  client.SendWorkDone(1);
  client.SendWorkDone(2);
  client.RequestWork({});
  std::vector<pb::Header> before;
  const uint64_t first_request = scheduler.Next(pb::WORK_REQUEST, &before).header.seq();
  REQUIRE(before.size() == 2);
  CHECK(client.unsaved_work_done() == 2);
  scheduler.Grant(first_request, 3);
  auto unit = client.AwaitWork();
  REQUIRE(unit.ok());
  REQUIRE(unit->has_value());
  CHECK((*unit)->id() == 3);
  CHECK(client.unsaved_work_done() == 0);

  // Unit 3 done and the next request open when a new scheduler takes over:
  // it hears of unit 3 again, then the request, and of nothing older.
  client.SendWorkDone(3);
  client.RequestWork({});
  scheduler.Next(pb::WORK_REQUEST);
  CHECK(client.unsaved_work_done() == 1);
  scheduler.Incarnation(2);
  before.clear();
  const Message resent = scheduler.Next(pb::WORK_REQUEST, &before);
  CHECK(resent.header.resent());
  std::vector<uint64_t> resent_done;
  for (const pb::Header& h : before) {
    if (h.type() == pb::WORK_DONE) resent_done.push_back(h.work().id());
  }
  CHECK(resent_done == std::vector<uint64_t>{3});

  // An answer with no unit is not saved first: unit 3 stays to be resent.
  pb::Header none;
  none.set_type(pb::WORK_GRANT);
  none.set_seq(resent.header.seq());
  scheduler.Send(none);
  auto last = client.AwaitWork();
  REQUIRE(last.ok());
  CHECK(!last->has_value());
  CHECK(client.unsaved_work_done() == 1);
}

}  // namespace
}  // namespace sparta::scheduler_client_test
