// sparta::client::PredictClient (worker/sdk/include/sparta/client/
// predict_client.h), the SDK's face of ctl/predict_client.h: the same client
// sparta-ctl predict uses, behind a header that shows only the standard
// library, in libsparta_client.so.
#include "sparta/client/predict_client.h"

#include "ctl/predict_client.h"

namespace sparta::client {

struct PredictClient::Impl {
  explicit Impl(std::vector<std::string> urls, std::string model, std::chrono::milliseconds recheck,
                ClusterConfig cluster)
      : client(std::move(urls), std::move(model), recheck, std::move(cluster)) {}
  sparta::PredictClient client;
};

PredictClient::PredictClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

PredictClient::~PredictClient() = default;

std::unique_ptr<PredictClient> PredictClient::Open(const std::vector<std::string>& urls, const std::string& model,
                                                   const Options& options, std::string* error) {
  if (urls.empty()) {
    *error = "no replica: give at least one http://HOST:PORT or tcp://HOST:PORT";
    return nullptr;
  }
  for (const std::string& url : urls) {
    if (absl::Status st = sparta::PredictClient::CheckUrl(url); !st.ok()) {
      *error = std::string(st.message());
      return nullptr;
    }
  }
  if (model.empty()) {
    *error = "no model name (the NAME of /v1/models/NAME:predict)";
    return nullptr;
  }
  auto cluster = sparta::ClientClusterConfig(options.key_file);
  if (!cluster.ok()) {
    *error = std::string(cluster.status().message());
    return nullptr;
  }
  return std::unique_ptr<PredictClient>(
      new PredictClient(std::make_unique<Impl>(urls, model, options.recheck, *std::move(cluster))));
}

Result PredictClient::Predict(const std::vector<std::string>& lines, std::chrono::milliseconds deadline) {
  Result result;
  auto answer = impl_->client.Predict(lines, deadline);
  if (!answer.ok()) {
    result.code = absl::IsInvalidArgument(answer.status()) ? Code::kBadRequest
                  : absl::IsDataLoss(answer.status())      ? Code::kBadAnswer
                                                           : Code::kUnavailable;
    result.message = std::string(answer.status().message());
    return result;
  }
  result.predictions = std::move(answer->predictions);
  result.model_version = answer->model_version;
  result.attempts = answer->attempts;
  return result;
}

}  // namespace sparta::client
