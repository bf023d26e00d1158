// sparta_predict_lines URLS MODEL [BATCH]: scores each line of stdin with the
// sparta-serve replicas in URLS (comma-separated http://HOST:PORT or
// tcp://HOST:PORT), BATCH lines a request (default 100), and prints one
// prediction a line, in order, as `eval.predictions_out` does (%.9g).
// Exits 1 with the reason if a request fails.
#include <sparta/client/predict_client.h>

#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: " << argv[0] << " URLS MODEL [BATCH] < lines\n";
    return 2;
  }
  std::vector<std::string> urls;
  std::stringstream list(argv[1]);
  for (std::string url; std::getline(list, url, ',');) urls.push_back(url);
  const size_t batch = argc > 3 ? std::stoul(argv[3]) : 100;

  std::string error;
  auto client = sparta::client::PredictClient::Open(urls, argv[2], {}, &error);
  if (client == nullptr) {
    std::cerr << error << "\n";
    return 2;
  }
  std::vector<std::string> lines;
  for (std::string line; std::getline(std::cin, line);) lines.push_back(line);
  for (size_t begin = 0; begin < lines.size(); begin += batch) {
    std::vector<std::string> part(lines.begin() + begin, lines.begin() + std::min(lines.size(), begin + batch));
    sparta::client::Result result = client->Predict(part, std::chrono::milliseconds(5000));
    if (!result.ok()) {
      std::cerr << "lines " << begin + 1 << "-" << begin + part.size() << ": " << result.message << "\n";
      return 1;
    }
    for (double p : result.predictions) std::printf("%.9g\n", p);
  }
  return 0;
}
