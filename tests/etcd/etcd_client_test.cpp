// The etcd client against a real 3-member cluster, where it differs from one person clicking
// slowly: edits while members stop and leaders die (each applied once, none reported wrongly), a
// watch that outlives its member and its history, idle replicas that send nothing.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "etcd_cluster.h"
#include "proxy_harness.h"
#include "replicas_fixture.h"
#include "strangler/common/etcd_client.h"
#include "strangler/proxy/config_file.h"

namespace strangler::etcd::testing {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;
using proxy::testing::FakeUpstream;

// A fixture of its own only for its base config and an in-process push: the cluster, the
// upstreams and the URL are the replica suites'.
class EtcdClientTest : public EtcdReplicasTest {
 protected:
  ordered_json emptyConfig() {
    return {{"listen", "127.0.0.1:0"},
            {"admin", {{"listen", "127.0.0.1:0"}}},
            {"upstreams",
             {{"monolith", {{"endpoints", {monolith_.address()}}}},
              {"driver-service", {{"endpoints", {service_.address()}}}}}},
            {"default_upstream", "monolith"},
            {"routes", ordered_json::array()}};
  }

  void storeConfig(const ordered_json& config) {
    auto store = proxy::ConfigStore::open(url_, proxy::ConfigStore::Mode::kReplace);
    ASSERT_TRUE(store.ok()) << store.error().message;
    store->json() = config;
    auto done = store->commit({proxy::nowIso8601(), "", "push", nullptr, nullptr, "tester"});
    ASSERT_TRUE(done.ok()) << done.error().message;
  }
};

// Four writers add routes through the CLI's own config store (compare-and-swap plus a journal
// line) while the member they talk to is stopped and then the leader is killed. Known end
// state: every edit reported done is in the config and journaled exactly once; every edit
// reported failed is in neither; an unknown outcome is allowed either way but never
// duplicated.
TEST_F(EtcdClientTest, EditsWhileMembersStopAndLeadersDieApplyOnceAndAreReportedTruly) {
  storeConfig(emptyConfig());
  constexpr int kWriters = 4;
  constexpr int kMinEdits = 10;  // each writer goes on until the last member is back
  std::atomic<bool> disturbed{false};
  enum class Outcome { kDone, kUnknown, kFailed };
  std::mutex mutex;
  std::map<std::string, Outcome> outcomes;
  std::map<std::string, std::string> failures;
  std::atomic<int> done_count{0};
  const uint64_t lost_before = common::EtcdClient::lostAnswersInProcess();

  const auto writer = [&](int w) {
    for (int i = 0; i < 300 && (i < kMinEdits || !disturbed.load()); ++i) {
      const std::string name = "w" + std::to_string(w) + "-" + std::to_string(i);
      Outcome outcome = Outcome::kFailed;
      std::string why;
      for (int attempt = 0; attempt < 100; ++attempt) {
        auto store = proxy::ConfigStore::open(url_);
        if (!store.ok()) {  // nothing written yet: try again
          why = store.error().message;
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          continue;
        }
        ordered_json route{
            {"name", name},
            {"match", {{"path", "/w" + std::to_string(w) + "/" + std::to_string(i) + "/**"}}},
            {"target", "driver-service"},
            {"stage", "monolith"}};
        store->json()["routes"].push_back(route);
        auto committed = store->commit(
            {proxy::nowIso8601(), name, "add", nullptr, proxy::stageOf(route), "tester"});
        if (committed.ok()) {
          outcome = Outcome::kDone;
          break;
        }
        why = committed.error().code + ": " + committed.error().message;
        if (committed.error().code == "conflict") continue;
        outcome =
            committed.error().code == "etcd_unknown_outcome" ? Outcome::kUnknown : Outcome::kFailed;
        break;
      }
      std::lock_guard lock(mutex);
      outcomes[name] = outcome;
      if (outcome != Outcome::kDone) failures[name] = why;
      if (outcome == Outcome::kDone) ++done_count;
    }
  };
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w)
    writers.emplace_back(writer, w);

  // Each store starts with the first member: stopping it leaves requests sent and unanswered.
  ASSERT_TRUE(eventually([&] { return done_count.load() >= 8; }, std::chrono::seconds(30)));
  cluster_->pause(0);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  cluster_->resume(0);
  ASSERT_TRUE(eventually([&] { return done_count.load() >= 24; }, std::chrono::seconds(60)));
  for (int kill = 0; kill < 2; ++kill) {
    const int leader = cluster_->leader();
    ASSERT_GE(leader, 0);
    cluster_->kill(leader);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    cluster_->start(leader);
    ASSERT_TRUE(cluster_->waitHealthy());
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  disturbed = true;
  for (auto& thread : writers)
    thread.join();
  const uint64_t lost = common::EtcdClient::lostAnswersInProcess() - lost_before;
  std::cout << "edits done " << done_count.load() << " of " << outcomes.size()
            << ", answers lost and settled by the operation id: " << lost << std::endl;

  auto etcd = client();
  auto config = etcd.get(std::string(kPrefix) + "/config");
  ASSERT_TRUE(config.ok() && config->first) << "no config";
  std::map<std::string, int> in_config;
  const json stored = json::parse(config->first->value);
  for (const auto& route : stored["routes"])
    ++in_config[route["name"].get<std::string>()];
  auto journal = etcd.getPrefix(std::string(kPrefix) + "/journal/");
  ASSERT_TRUE(journal.ok()) << journal.error().message;
  std::map<std::string, int> journaled;
  for (const auto& kv : journal->kvs) {
    const json line = json::parse(kv.value);
    if (line["action"] == "add") ++journaled[line["route"].get<std::string>()];
  }
  int unknown = 0;
  for (const auto& [name, outcome] : outcomes) {
    EXPECT_LE(in_config[name], 1) << name << " is in the config twice";
    EXPECT_EQ(journaled[name], in_config[name]) << name << ": journal and config disagree";
    if (outcome == Outcome::kDone) {
      EXPECT_EQ(in_config[name], 1) << name << " reported done";
    }
    if (outcome == Outcome::kFailed) {
      EXPECT_EQ(in_config[name], 0) << name << " reported failed (" << failures[name] << ")";
    }
    if (outcome == Outcome::kUnknown) ++unknown;
  }
  for (const auto& [name, count] : in_config)
    EXPECT_EQ(outcomes.count(name), 1u) << name << " is in the config but was never written";
  // Retries settle lost answers: an edit is reported unknown only when etcd stayed unreachable
  // for the whole budget, which this walk never causes.
  EXPECT_EQ(unknown, 0);
  EXPECT_EQ(static_cast<size_t>(done_count.load()), outcomes.size());
  for (const auto& [name, why] : failures)
    ADD_FAILURE() << name << ": " << why;
}

// A follower pinned to one member: when that member dies the follower keeps what it had; when
// it returns the stream resumes after the last event it saw, without reading the keys again;
// when the history it needs was compacted meanwhile, it reads them again once.
TEST_F(EtcdClientTest, FollowerResumesAfterItsMemberDiesAndRereadsOnlyAfterCompaction) {
  const std::string prefix = std::string(kPrefix) + "/keys/";
  auto writer = client();
  // A put whose answer is lost (the member killed may be the leader) is read back, as a user
  // of a plain put must.
  const auto write = [&](const std::string& key, const std::string& value) {
    for (int attempt = 0; attempt < 10; ++attempt) {
      if (writer.put(key, value).ok()) return true;
      auto found = writer.get(key);
      if (found.ok() && found->first && found->first->value == value) return true;
    }
    return false;
  };
  for (int i = 1; i <= 5; ++i)
    ASSERT_TRUE(write(prefix + "k" + std::to_string(i), "v" + std::to_string(i)));

  std::mutex mutex;
  std::map<std::string, std::string> seen;
  int64_t snapshots = 0;
  std::vector<std::string> errors;
  common::EtcdClient pinned({common::parseHostPort(cluster_->endpoint(0)).value()},
                            common::EtcdSecurity{}, std::chrono::milliseconds(1000), false);
  common::EtcdFollower follower(
      pinned, prefix, true,
      [&](const common::EtcdRange& range) {
        std::lock_guard lock(mutex);
        seen.clear();
        for (const auto& kv : range.kvs)
          seen[kv.key] = kv.value;
        ++snapshots;
      },
      [&](const std::string& why) {
        std::lock_guard lock(mutex);
        errors.push_back(why);
      });
  const auto etcdHolds = [&] {
    auto range = writer.getPrefix(prefix);
    std::map<std::string, std::string> out;
    if (range.ok())
      for (const auto& kv : range->kvs)
        out[kv.key] = kv.value;
    return out;
  };
  const auto followerHasWhatEtcdHolds = [&] {
    const auto expected = etcdHolds();
    return eventually(
        [&] {
          std::lock_guard lock(mutex);
          return seen == expected;
        },
        std::chrono::seconds(20));
  };
  ASSERT_TRUE(followerHasWhatEtcdHolds());

  // Its member dies; the others take writes; it comes back: the stream resumes.
  cluster_->kill(0);
  ASSERT_TRUE(write(prefix + "k6", "v6"));
  ASSERT_TRUE(writer.remove(prefix + "k1").ok());
  {
    std::lock_guard lock(mutex);
    EXPECT_EQ(seen.count(prefix + "k6"), 0u);  // cut off, it keeps what it had
    EXPECT_EQ(seen.count(prefix + "k1"), 1u);
  }
  cluster_->start(0);
  ASSERT_TRUE(followerHasWhatEtcdHolds());
  // A fresh member process counts from zero: a follower that read the keys again would show.
  EXPECT_EQ(cluster_->calls("Range", 0), 0) << "the follower read everything again to resume";

  // Cut off again while its history is compacted away: it must read the keys again.
  cluster_->kill(0);
  ASSERT_TRUE(write(prefix + "k7", "v7"));
  ASSERT_TRUE(write(prefix + "k8", "v8"));
  auto last = writer.get(prefix + "k8");
  ASSERT_TRUE(last.ok() && last->first);
  const auto compacted = strangler::testing::httpRequest(
      "127.0.0.1", cluster_->clientPort(1), "POST", "/v3/kv/compaction",
      json{{"revision", std::to_string(last->first->mod_revision)}, {"physical", true}}.dump(), {},
      std::chrono::seconds(5));
  ASSERT_EQ(compacted.status, 200) << compacted.body;
  ASSERT_TRUE(write(prefix + "k9", "v9"));
  cluster_->start(0);
  ASSERT_TRUE(followerHasWhatEtcdHolds());
  {
    std::lock_guard lock(mutex);
    EXPECT_TRUE(std::any_of(errors.begin(), errors.end(), [](const std::string& e) {
      return e.find("compacted") != std::string::npos;
    })) << "the follower did not notice the compaction";
  }
  EXPECT_GE(cluster_->calls("Range", 0), 1) << "after a compaction the keys must be read again";
  follower.stop();
}

// Idle replicas hold their watch streams open and renew their registrations: no reads, no
// writes, no new watches while nothing changes, and an edit still reaches each of them.
TEST_F(EtcdClientTest, IdleReplicasSendOnlyLeaseRenewals) {
  auto config = emptyConfig();
  config["routes"].push_back({{"name", "drivers"},
                              {"match", {{"path", "/api/drivers/**"}}},
                              {"target", "driver-service"},
                              {"stage", "monolith"}});
  storeConfig(config);
  std::vector<std::unique_ptr<ProxyReplica>> replicas;
  for (int i = 0; i < 3; ++i) {
    replicas.push_back(std::make_unique<ProxyReplica>(url_));
    ASSERT_TRUE(replicas.back()->running());
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));  // started, registered, watching
  std::map<std::string, int64_t> before;
  for (const std::string method : {"Range", "Txn", "Put", "Watch", "LeaseGrant", "LeaseKeepAlive"})
    before[method] = cluster_->calls(method);
  std::this_thread::sleep_for(std::chrono::seconds(7));
  std::map<std::string, int64_t> during;
  for (const auto& [method, count] : before)
    during[method] = cluster_->calls(method) - count;
  for (const std::string method : {"Range", "Txn", "Put", "Watch", "LeaseGrant"})
    EXPECT_EQ(during[method], 0) << method << " calls from idle replicas";
  EXPECT_GT(during["LeaseKeepAlive"], 0) << "the replicas stopped renewing their registration";

  auto store = proxy::ConfigStore::open(url_);
  ASSERT_TRUE(store.ok()) << store.error().message;
  (*store->route("drivers"))["stage"] = "extracted";
  ASSERT_TRUE(
      store->commit({proxy::nowIso8601(), "drivers", "extract", nullptr, nullptr, "t"}).ok());
  for (auto& replica : replicas) {
    EXPECT_TRUE(eventually(
        [&] {
          const json routes = replica->routes();
          if (!routes.is_object()) return false;
          for (const auto& r : routes.value("routes", json::array()))
            if (r.value("name", "") == "drivers") return r.value("stage", "") == "extracted";
          return false;
        },
        std::chrono::seconds(5)));
  }
}

// A cluster serving clients over TLS with etcd's own users: replicas and the CLI reach it with
// the STRANGLER_ETCD_* settings, a token that expires is renewed unseen, a wrong password or a
// missing CA is a clear error and the replica keeps serving what it had.
TEST(EtcdSecurityTest, TlsAndPasswordsServeReplicasAndRefuseClearly) {
  STRANGLER_NEED_ETCD();
  strangler::testing::TempDir dir("strangler-etcd-tls");
  const std::string cert = dir.file("etcd.pem");
  const std::string key = dir.file("etcd.key");
  proxy::testing::makeCertificate(cert, key, "127.0.0.1");
  // Tokens live 2 s here (300 s by default), so the test sees one expire.
  EtcdCluster cluster(3, {cert, key, {"--auth-token-ttl", "2"}});
  ASSERT_TRUE(cluster.waitHealthy());
  const std::string https = "https://" + cluster.endpoint(0);
  const auto plain = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"--endpoints", https, "--cacert", cert});
    return strangler::testing::runCommand("/usr/bin/etcdctl", args, std::chrono::seconds(20));
  };
  ASSERT_EQ(plain({"user", "add", "root", "--new-user-password", "rootpw"}).exit_code, 0);
  ASSERT_EQ(plain({"user", "add", "app", "--new-user-password", "apppw"}).exit_code, 0);
  ASSERT_EQ(plain({"role", "add", "strangler"}).exit_code, 0);
  ASSERT_EQ(
      plain({"role", "grant-permission", "strangler", "--prefix=true", "readwrite", "/strangler/"})
          .exit_code,
      0);
  ASSERT_EQ(plain({"user", "grant-role", "app", "strangler"}).exit_code, 0);
  const auto enabled = plain({"auth", "enable"});
  ASSERT_EQ(enabled.exit_code, 0) << enabled.output;

  const auto members = common::parseEtcdEndpoints(cluster.endpoints()).value();
  common::EtcdSecurity security;
  security.tls = true;
  security.ca_file = cert;
  security.user = "app";
  security.password = "apppw";
  common::EtcdClient client(members, security);
  ASSERT_TRUE(client.put("/strangler/tls/a", "1").ok());
  std::this_thread::sleep_for(std::chrono::seconds(3));  // the token expires
  auto read = client.get("/strangler/tls/a");
  ASSERT_TRUE(read.ok()) << read.error().message;
  ASSERT_TRUE(read->first);
  EXPECT_EQ(read->first->value, "1");
  auto denied = client.put("/elsewhere", "1");
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.error().code, "etcd_auth") << denied.error().message;

  auto wrong = security;
  wrong.password = "nope";
  auto refused = common::EtcdClient(members, wrong).get("/strangler/tls/a");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, "etcd_auth");
  EXPECT_NE(refused.error().message.find("refused user 'app'"), std::string::npos)
      << refused.error().message;
  auto no_tls = security;
  no_tls.tls = false;
  auto unreachable = common::EtcdClient(members, no_tls)
                         .withBudget(std::chrono::seconds(1))
                         .get("/strangler/tls/a");
  EXPECT_FALSE(unreachable.ok());

  // The real binaries, configured by the environment only.
  FakeUpstream monolith("monolith");
  FakeUpstream service("driver-service");
  const std::string url = cluster.url("/strangler/prod");
  const strangler::testing::ChildProcess::Env env = {{"STRANGLER_ETCD_CA_FILE", cert},
                                                     {"STRANGLER_ETCD_USER", "app"},
                                                     {"STRANGLER_ETCD_PASSWORD", "apppw"},
                                                     {"STRANGLER_USER", "tester"}};
  const json config = {{"listen", "127.0.0.1:0"},
                       {"admin", {{"listen", "127.0.0.1:0"}}},
                       {"debug_headers", true},
                       {"upstreams",
                        {{"monolith", {{"endpoints", {monolith.address()}}}},
                         {"driver-service", {{"endpoints", {service.address()}}}}}},
                       {"default_upstream", "monolith"},
                       {"routes",
                        {{{"name", "drivers"},
                          {"match", {{"path", "/api/drivers/**"}}},
                          {"target", "driver-service"},
                          {"stage", "monolith"}}}}};
  std::ofstream(dir.file("config.json")) << config.dump(2);
  const auto cli = [&](std::vector<std::string> args,
                       const strangler::testing::ChildProcess::Env& with) {
    args.insert(args.begin(), {"--config", url});
    return strangler::testing::runCommand(STRANGLER_CLI_BIN, args, std::chrono::seconds(30), with);
  };
  const auto pushed = cli({"config", "push", dir.file("config.json")}, env);
  ASSERT_EQ(pushed.exit_code, 0) << pushed.output;
  ProxyReplica replica(url, {}, env);
  ASSERT_TRUE(replica.running());
  const auto stageOnReplica = [&] {
    const json routes = replica.routes();
    if (!routes.is_object()) return std::string("(no answer)");
    for (const auto& r : routes.value("routes", json::array()))
      if (r.value("name", "") == "drivers") return r.value("stage", std::string());
    return std::string("(no route)");
  };
  EXPECT_EQ(stageOnReplica(), "monolith");

  auto bad_env = env;
  bad_env[2].second = "nope";
  const auto refused_edit = cli({"routes", "shadow", "drivers"}, bad_env);
  EXPECT_NE(refused_edit.exit_code, 0);  // (its message, on stderr, is the one checked above)
  EXPECT_EQ(stageOnReplica(), "monolith");
  std::this_thread::sleep_for(std::chrono::seconds(3));  // the replica's token expires meanwhile
  const auto edited = cli({"routes", "shadow", "drivers"}, env);
  ASSERT_EQ(edited.exit_code, 0) << edited.output;
  EXPECT_TRUE(eventually([&] { return stageOnReplica() == "shadow"; }, std::chrono::seconds(10)))
      << stageOnReplica();
}

// A replica that may read its config but not register (its etcd user lacks the right at first)
// serves, keeps trying, and registers and takes the decider role as soon as it may: a replica
// that stayed unregistered would be missed by a cutover's fence.
TEST(EtcdSecurityTest, AReplicaRefusedRegistrationKeepsTryingUntilItMay) {
  STRANGLER_NEED_ETCD();
  EtcdCluster cluster(3);
  ASSERT_TRUE(cluster.waitHealthy());
  const std::string http = "http://" + cluster.endpoint(0);
  const auto etcdctl = [&](std::vector<std::string> args, bool as_root = true) {
    args.insert(args.begin(), {"--endpoints", http});
    if (as_root) args.insert(args.begin(), {"--user", "root:rootpw"});
    return strangler::testing::runCommand("/usr/bin/etcdctl", args, std::chrono::seconds(20));
  };
  const std::string prefix = "/strangler/prod";
  ASSERT_EQ(etcdctl({"user", "add", "root", "--new-user-password", "rootpw"}, false).exit_code, 0);
  ASSERT_EQ(etcdctl({"user", "add", "app", "--new-user-password", "apppw"}, false).exit_code, 0);
  ASSERT_EQ(etcdctl({"role", "add", "proxy"}, false).exit_code, 0);
  // The config and the journal only: no registry, no decider key.
  ASSERT_EQ(etcdctl({"role", "grant-permission", "proxy", "readwrite", prefix + "/config"}, false)
                .exit_code,
            0);
  ASSERT_EQ(etcdctl({"role", "grant-permission", "proxy", "--prefix=true", "readwrite",
                     prefix + "/journal/"},
                    false)
                .exit_code,
            0);
  ASSERT_EQ(etcdctl({"user", "grant-role", "app", "proxy"}, false).exit_code, 0);
  ASSERT_EQ(etcdctl({"auth", "enable"}, false).exit_code, 0);

  FakeUpstream monolith("monolith");
  strangler::testing::TempDir dir("strangler-etcd-register");
  const json config = {{"listen", "127.0.0.1:0"},
                       {"admin", {{"listen", "127.0.0.1:0"}}},
                       {"upstreams", {{"monolith", {{"endpoints", {monolith.address()}}}}}},
                       {"default_upstream", "monolith"},
                       {"routes", json::array()}};
  std::ofstream(dir.file("config.json")) << config.dump();
  const strangler::testing::ChildProcess::Env env = {{"STRANGLER_ETCD_USER", "app"},
                                                     {"STRANGLER_ETCD_PASSWORD", "apppw"}};
  const std::string url = cluster.url(prefix);
  const auto pushed = strangler::testing::runCommand(
      STRANGLER_CLI_BIN, {"--config", url, "config", "push", dir.file("config.json")},
      std::chrono::seconds(30), env);
  ASSERT_EQ(pushed.exit_code, 0) << pushed.output;
  ProxyReplica replica(url, {}, env);
  ASSERT_TRUE(replica.running());
  EXPECT_EQ(replica.get("/anything").status, 200);
  const auto registered = [&] {
    const auto listed = etcdctl({"get", "--prefix", "--keys-only", prefix + "/replicas/"});
    return listed.output.find(prefix + "/replicas/") != std::string::npos;
  };
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_FALSE(registered());
  ASSERT_EQ(
      etcdctl({"role", "grant-permission", "proxy", "--prefix=true", "readwrite", prefix + "/"})
          .exit_code,
      0);
  EXPECT_TRUE(eventually(registered, std::chrono::seconds(10))) << "never registered";
  EXPECT_TRUE(eventually(
      [&] {
        const auto decider = etcdctl({"get", "--print-value-only", prefix + "/decider"});
        return decider.output.find('-') != std::string::npos;  // <host>-<pid>
      },
      std::chrono::seconds(10)))
      << "never became the decider";
}

}  // namespace
}  // namespace strangler::etcd::testing
