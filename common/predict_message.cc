#include "common/predict_message.h"

#include "absl/strings/str_cat.h"

namespace sparta {

PredictRequest MakePredictRequest(std::string_view model, std::span<const std::string> lines, double deadline_ms,
                                  uint64_t seq) {
  PredictRequest request;
  request.header.set_type(pb::PREDICT);
  request.header.set_model(std::string(model));
  request.header.set_num_keys(static_cast<uint32_t>(lines.size()));
  request.header.set_deadline_ms(deadline_ms);
  request.header.set_seq(seq);
  size_t bytes = 0;
  for (const std::string& line : lines) bytes += line.size() + 1;
  request.frame.reserve(bytes);
  for (const std::string& line : lines) absl::StrAppend(&request.frame, line, "\n");
  return request;
}

absl::StatusOr<std::vector<std::string_view>> PredictRecordsOf(const Message& request) {
  const zmq::message_t& frame = request.frames.at(0);  // ValidateMessage: exactly one
  std::string_view text(static_cast<const char*>(frame.data()), frame.size());
  std::vector<std::string_view> records;
  records.reserve(request.header.num_keys());
  while (!text.empty()) {
    const size_t end = text.find('\n');
    if (end == std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("instance ", records.size(), " is not ended by a newline"));
    }
    if (records.size() == request.header.num_keys()) break;
    records.push_back(text.substr(0, end));
    text.remove_prefix(end + 1);
  }
  if (records.size() != request.header.num_keys() || !text.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("the header says ", request.header.num_keys(),
                                                   " instances, the frame holds ",
                                                   records.size() + (text.empty() ? 0 : 1), " or more"));
  }
  return records;
}

absl::StatusOr<Message> AwaitResponse(zmq::socket_t& socket, uint64_t seq,
                                      std::chrono::steady_clock::time_point until) {
  for (;;) {
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    zmq::pollitem_t item{static_cast<void*>(socket), 0, ZMQ_POLLIN, 0};
    if (wait.count() <= 0 || zmq::poll(&item, 1, wait) == 0) return absl::DeadlineExceededError("no answer in time");
    auto got = ReceiveMessage(socket, /*from_router=*/false);
    if (!got.ok()) return got.status();
    if (!got->has_value()) continue;
    if ((*got)->header.type() == pb::RESPONSE && (*got)->header.seq() == seq) return std::move(**got);
  }
}

}  // namespace sparta
