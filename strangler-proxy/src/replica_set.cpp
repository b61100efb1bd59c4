#include "strangler/proxy/replica_set.h"

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/StreamCopier.h>

#include <future>
#include <iostream>

namespace strangler::proxy {
namespace {

using nlohmann::json;

// The registration outlives a stalled process by this much: a replica killed without a goodbye
// leaves the registry (and the decider role) within it.
constexpr int64_t kReplicaTtlSeconds = 5;

ReplicaAnswer fetchFigures(const json& document, std::chrono::milliseconds timeout) {
  ReplicaAnswer answer;
  answer.id = document.value("id", "");
  answer.admin = document.value("admin", "");
  answer.updated_at = document.value("updated_at", "");
  auto address = common::parseHostPort(answer.admin);
  if (!address.ok() || address->port == 0) {
    answer.error = "registered without an admin address";
    return answer;
  }
  try {
    Poco::Net::HTTPClientSession session(address->host, address->port);
    const Poco::Timespan span(
        std::chrono::duration_cast<std::chrono::microseconds>(timeout).count());
    session.setTimeout(span, span, span);
    Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_GET, "/figures",
                                   Poco::Net::HTTPMessage::HTTP_1_1);
    session.sendRequest(request);
    Poco::Net::HTTPResponse response;
    std::string body;
    Poco::StreamCopier::copyToString(session.receiveResponse(response), body);
    if (response.getStatus() != Poco::Net::HTTPResponse::HTTP_OK) {
      answer.error = "GET /figures answered " + std::to_string(response.getStatus());
      return answer;
    }
    answer.figures = json::parse(body, nullptr, false);
    if (!answer.figures.is_object()) {
      answer.error = "GET /figures answered something that is not JSON";
      return answer;
    }
    answer.answered = true;
  } catch (const std::exception& error) {
    answer.error = std::string("no answer from ") + answer.admin + ": " + error.what();
  }
  return answer;
}

}  // namespace

ReplicaSet::ReplicaSet(common::EtcdLocation location, std::string id, Document document)
    : location_(std::move(location)),
      id_(std::move(id)),
      document_(std::move(document)),
      client_(location_.endpoints) {}

common::Result<std::unique_ptr<ReplicaSet>> ReplicaSet::start(common::EtcdLocation location,
                                                              std::string id, Document document) {
  std::unique_ptr<ReplicaSet> set(
      new ReplicaSet(std::move(location), std::move(id), std::move(document)));
  auto keeper = common::EtcdLeaseKeeper::start(
      set->client_, kReplicaTtlSeconds,
      {{set->location_.key("replicas/" + set->id_), set->document_()}},
      /*keep_trying=*/true);  // an unregistered replica would be missed by a cutover's fence
  if (!keeper) return keeper.error();
  set->keeper_ = std::move(keeper).value();
  auto* raw = set.get();
  // Registered again (a new lease after one was lost, which took the decider key with it; or a
  // registration etcd had refused): try for the role if nobody holds it.
  set->keeper_->onRegrant([raw] {
    if (raw->decider().empty()) raw->campaign();
  });
  set->registry_ = std::make_unique<common::EtcdFollower>(
      set->client_, set->location_.key("replicas/"), true,
      [raw](const common::EtcdRange& range) {
        std::vector<json> documents;
        for (const auto& kv : range.kvs) {
          auto doc = json::parse(kv.value, nullptr, false);
          if (doc.is_object()) documents.push_back(std::move(doc));
        }
        std::lock_guard lock(raw->mutex_);
        raw->documents_ = std::move(documents);
      },
      [](const std::string& why) {
        std::cerr << "strangler-proxy: replica registry: " << why << std::endl;
      });
  set->decider_follower_ = std::make_unique<common::EtcdFollower>(
      set->client_, set->location_.key("decider"), false,
      [raw](const common::EtcdRange& range) { raw->onDecider(range); },
      [](const std::string& why) {
        std::cerr << "strangler-proxy: decider: " << why << std::endl;
      });
  return set;
}

ReplicaSet::~ReplicaSet() {
  stop();
}

void ReplicaSet::stop() {
  if (decider_follower_) decider_follower_->stop();
  if (registry_) registry_->stop();
  // Revoking the lease deletes the registration and, when held, the decider key: another
  // replica takes the role at once instead of after the lease's TTL.
  if (keeper_) keeper_->stop();
}

void ReplicaSet::onDecider(const common::EtcdRange& range) {
  if (!range.kvs.empty()) {
    std::lock_guard lock(mutex_);
    decider_ = range.kvs.front().value;
    decider_lease_ = range.kvs.front().lease;
    return;
  }
  {
    std::lock_guard lock(mutex_);
    decider_.clear();
    decider_lease_ = 0;
  }
  campaign();
}

void ReplicaSet::campaign() {
  // No decider: try to become it. Several replicas may try at once; the create-if-absent
  // transaction lets exactly one win, and the watch then tells everyone who did.
  const int64_t lease = keeper_ ? keeper_->lease() : 0;
  if (lease == 0) return;
  using Target = common::EtcdCompare::Target;
  auto won = client_.txn({{Target::kCreateRevision, location_.key("decider"), 0, ""}},
                         {{common::EtcdOp::Kind::kPut, location_.key("decider"), id_, lease}});
  if (won.ok() && *won)
    std::cout << "strangler-proxy: replica " << id_ << " is the decider" << std::endl;
}

void ReplicaSet::update() {
  if (keeper_) keeper_->update(location_.key("replicas/" + id_), document_());
}

std::vector<json> ReplicaSet::documents() const {
  std::lock_guard lock(mutex_);
  return documents_;
}

bool ReplicaSet::isDecider() const {
  std::lock_guard lock(mutex_);
  return decider_ == id_ && keeper_ && decider_lease_ == keeper_->lease();
}

std::string ReplicaSet::decider() const {
  std::lock_guard lock(mutex_);
  return decider_;
}

std::pair<std::string, std::string> ReplicaSet::fence() const {
  return {location_.key("decider"), id_};
}

std::vector<ReplicaAnswer> ReplicaSet::fetchOthers(std::chrono::milliseconds timeout) const {
  std::vector<std::future<ReplicaAnswer>> pending;
  for (const auto& document : documents()) {
    if (document.value("id", "") == id_) continue;
    pending.push_back(std::async(std::launch::async, fetchFigures, document, timeout));
  }
  std::vector<ReplicaAnswer> answers;
  for (auto& answer : pending)
    answers.push_back(answer.get());
  return answers;
}

}  // namespace strangler::proxy
