#include "shared/config_loader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pugixml.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <new>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "shared/member_fields.h"
#include "shared/quote.h"
#include "shared/self_loop.h"

namespace rtpc {
namespace {

constexpr size_t kMaxConfigBytes = 16u << 20;

// Thrown inside the loader only; loadConfigText turns it into the error line.
struct LoadFailure {
  ptrdiff_t offset;  // into the document, for the line number
  std::string message;
};

[[noreturn]] void failAt(const pugi::xml_node& node, std::string message) {
  throw LoadFailure{node.offset_debug(), std::move(message)};
}

std::string_view trim(std::string_view s) {
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string tag(std::string_view name) {
  std::string out;
  out.reserve(name.size() + 2);
  out += '<';
  out += name;
  out += '>';
  return out;
}

// Context prefix of a message: "" at top level, `cluster "c1"`, ...
std::string withContext(const std::string& context, std::string message) {
  if (context.empty()) return message;
  return context + ": " + message;
}

class Loader {
 public:
  Loader(std::string_view text, std::string_view display_name)
      : text_(text), display_name_(display_name) {}

  LoadResult run() {
    try {
      Config config = load();
      config.source_path = std::string(display_name_);
      return LoadResult{std::move(config), {}};
    } catch (const LoadFailure& failure) {
      return LoadResult{std::nullopt, std::string(display_name_) + ":" +
                                          std::to_string(lineOf(failure.offset)) + ": " +
                                          failure.message};
    } catch (const std::bad_alloc&) {
      return LoadResult{std::nullopt, std::string(display_name_) + ": out of memory"};
    } catch (const std::exception& e) {
      return LoadResult{std::nullopt, std::string(display_name_) + ": " + e.what()};
    }
  }

 private:
  struct Seen {
    std::string name;
    ptrdiff_t offset;
  };

  size_t lineOf(ptrdiff_t offset) const {
    if (offset < 0) return 1;
    const size_t end = std::min(static_cast<size_t>(offset), text_.size());
    return 1 + static_cast<size_t>(std::count(text_.begin(), text_.begin() + static_cast<ptrdiff_t>(end), '\n'));
  }

  Config load() {
    pugi::xml_document doc;
    const pugi::xml_parse_result parsed =
        doc.load_buffer(text_.data(), text_.size(), pugi::parse_default, pugi::encoding_utf8);
    if (!parsed) {
      throw LoadFailure{parsed.offset, std::string("malformed XML: ") + parsed.description()};
    }
    pugi::xml_node root;
    for (pugi::xml_node node : doc.children()) {
      if (node.type() == pugi::node_element) {
        if (root) failAt(node, "more than one root element: " + tag(node.name()));
        root = node;
      } else if (node.type() == pugi::node_pcdata || node.type() == pugi::node_cdata) {
        rejectText(node, "", "the document");
      }
    }
    if (!root) throw LoadFailure{0, "malformed XML: No document element found"};
    if (std::string_view(root.name()) != "rtp_cluster_config") {
      failAt(root, "root element must be <rtp_cluster_config>, got " + tag(root.name()));
    }
    rejectAttributes(root, "");

    Config config;
    pugi::xml_node metrics;
    for (pugi::xml_node node : root.children()) {
      if (node.type() != pugi::node_element) {
        rejectText(node, "", "<rtp_cluster_config>");
        continue;
      }
      if (std::string_view(node.name()) == "metrics") {
        if (metrics) {
          failAt(node, "duplicate <metrics> (first at line " + std::to_string(lineOf(metrics.offset_debug())) + ")");
        }
        metrics = node;
        config.metrics_address = loadMetrics(node);
        continue;
      }
      if (std::string_view(node.name()) != "rtp_cluster") {
        failAt(node, "unknown element " + tag(node.name()) + " in <rtp_cluster_config>");
      }
      config.clusters.push_back(loadCluster(node, config.clusters.size() + 1));
    }
    return config;
  }

  void rejectText(const pugi::xml_node& node, const std::string& context, std::string_view where) {
    if (node.type() != pugi::node_pcdata && node.type() != pugi::node_cdata) return;
    const std::string_view value = trim(node.value());
    if (value.empty()) return;
    // Point at the text itself, not at the line break before it.
    size_t offset = static_cast<size_t>(std::max<ptrdiff_t>(node.offset_debug(), 0));
    while (offset < text_.size() && std::string_view(" \t\r\n").find(text_[offset]) != std::string_view::npos) {
      ++offset;
    }
    throw LoadFailure{static_cast<ptrdiff_t>(offset),
                      withContext(context, "unexpected text " + quoteForMessage(value) + " in " + std::string(where))};
  }

  void rejectAttributes(const pugi::xml_node& node, const std::string& context,
                        std::string_view allowed = {}) {
    for (pugi::xml_attribute attr : node.attributes()) {
      if (!allowed.empty() && allowed == attr.name()) continue;
      failAt(node, withContext(context, "unexpected attribute " + quoteForMessage(attr.name()) + " on " +
                                            tag(node.name())));
    }
  }

  // Collects the element children of a container: each known name at most
  // once (except `repeated`), unknown names and stray text rejected.
  struct Children {
    std::vector<std::pair<std::string_view, pugi::xml_node>> single;
    std::vector<pugi::xml_node> repeated;
    pugi::xml_node get(std::string_view name) const {
      for (const auto& [n, node] : single) {
        if (n == name) return node;
      }
      return {};
    }
  };

  Children collect(const pugi::xml_node& parent, const std::string& context,
                   std::initializer_list<std::string_view> known, std::string_view repeated = {}) {
    return collect(parent, context, std::span<const std::string_view>(known.begin(), known.size()), repeated);
  }

  Children collect(const pugi::xml_node& parent, const std::string& context, std::span<const std::string_view> known,
                   std::string_view repeated = {}) {
    Children children;
    for (pugi::xml_node node : parent.children()) {
      if (node.type() != pugi::node_element) {
        rejectText(node, context, tag(parent.name()));
        continue;
      }
      const std::string_view name = node.name();
      if (!repeated.empty() && name == repeated) {
        children.repeated.push_back(node);
        continue;
      }
      if (std::find(known.begin(), known.end(), name) == known.end()) {
        failAt(node, withContext(context, "unknown element " + tag(name) + " in " + tag(parent.name())));
      }
      if (pugi::xml_node first = children.get(name)) {
        failAt(node, withContext(context, "duplicate " + tag(name) + " (first at line " +
                                              std::to_string(lineOf(first.offset_debug())) + ")"));
      }
      children.single.emplace_back(name, node);
    }
    return children;
  }

  // The trimmed text of an element that must hold only text.
  std::string leafValue(const pugi::xml_node& node, const std::string& context) {
    rejectAttributes(node, context);
    std::string value;
    for (pugi::xml_node child : node.children()) {
      if (child.type() == pugi::node_element) {
        failAt(child, withContext(context, tag(node.name()) + " must not contain elements, got " +
                                               tag(child.name())));
      }
      if (child.type() == pugi::node_pcdata || child.type() == pugi::node_cdata) value += child.value();
    }
    return std::string(trim(value));
  }

  pugi::xml_node require(const Children& children, std::string_view name, const pugi::xml_node& parent,
                         const std::string& context) {
    pugi::xml_node node = children.get(name);
    if (!node) {
      const std::string where =
          std::string_view(parent.name()) == "disconnect_notify" ? " in <disconnect_notify>" : "";
      failAt(parent, withContext(context, "missing " + tag(name) + where));
    }
    return node;
  }

  // What a message calls a cluster or member before its name is validated:
  // its name when it has a usable one, else its position.
  std::string peekName(const pugi::xml_node& node) const {
    pugi::xml_node name = node.child("name");
    if (!name) return {};
    std::string value;
    for (pugi::xml_node child : name.children()) {
      if (child.type() == pugi::node_pcdata || child.type() == pugi::node_cdata) value += child.value();
    }
    return std::string(trim(value));
  }

  // A field rule's complaint becomes this element's error line.
  void check(const pugi::xml_node& node, const std::string& context, std::optional<std::string> problem) {
    if (problem) failAt(node, withContext(context, std::move(*problem)));
  }

  std::string checkName(const pugi::xml_node& node, const std::string& context) {
    std::string name = leafValue(node, context);
    check(node, context, checkNameField(name, tag(node.name())));
    return name;
  }

  Transport checkProtocol(const pugi::xml_node& node, const std::string& context) {
    Transport transport{};
    check(node, context, parseProtocolField(leafValue(node, context), tag(node.name()), transport));
    return transport;
  }

  SocketAddress checkAddress(const pugi::xml_node& node, Transport transport, const std::string& context,
                             uint16_t default_port = kDefaultControlPort) {
    SocketAddress address;
    check(node, context,
          parseAddressField(transport, leafValue(node, context), tag(node.name()), default_port, address));
    return address;
  }

  uint32_t checkInteger(const pugi::xml_node& node, const std::string& context, uint32_t min, uint32_t max,
                        std::string_view what) {
    uint32_t value = 0;
    const std::string label = tag(node.name()) + std::string(what);
    check(node, context, parseIntegerField(leafValue(node, context), min, max, label, value));
    return value;
  }

  ClusterConfig loadCluster(const pugi::xml_node& node, size_t index) {
    const std::string peeked = peekName(node);
    const std::string context =
        peeked.empty() ? "cluster #" + std::to_string(index) : "cluster " + quoteForMessage(peeked);
    rejectAttributes(node, context);
    const Children children = collect(
        node, context, {"name", "protocol", "address", "disconnect_notify", "capacity_limit", "tuning"},
        "rtpproxy");

    ClusterConfig cluster;
    const pugi::xml_node name_node = require(children, "name", node, context);
    cluster.name = checkName(name_node, context);
    if (auto [it, inserted] = cluster_names_.try_emplace(cluster.name, name_node.offset_debug()); !inserted) {
      failAt(name_node, "duplicate cluster name " + quoteForMessage(cluster.name) + " (first at line " +
                            std::to_string(lineOf(it->second)) + ")");
    }

    const Transport transport = checkProtocol(require(children, "protocol", node, context), context);
    const pugi::xml_node address_node = require(children, "address", node, context);
    cluster.control = checkAddress(address_node, transport, context);
    if (auto [it, inserted] = controls_.try_emplace(endpointKey(cluster.control), cluster.name); !inserted) {
      failAt(address_node, withContext(context, "control address " + cluster.control.uri() +
                                                    " is already used by cluster " + quoteForMessage(it->second)));
    }

    if (pugi::xml_node dn = children.get("disconnect_notify")) {
      cluster.disconnect_notify = loadDisconnectNotify(dn, context);
    }
    if (pugi::xml_node cl = children.get("capacity_limit")) cluster.capacity_limit = loadCapacityLimit(cl, context);
    if (pugi::xml_node tuning = children.get("tuning")) cluster.tuning = loadTuning(tuning, context);

    if (children.repeated.empty()) failAt(node, withContext(context, "needs at least one <rtpproxy>"));
    std::vector<Seen> member_names;
    for (const pugi::xml_node& member_node : children.repeated) {
      if (cluster.members.size() == kMaxMembersPerCluster) {
        failAt(member_node, withContext(context, "at most " + std::to_string(kMaxMembersPerCluster) +
                                                     " <rtpproxy> allowed"));
      }
      MemberConfig member = loadMember(member_node, cluster.members.size() + 1, cluster.name);
      for (const Seen& seen : member_names) {
        if (seen.name == member.name) {
          failAt(member_node.child("name"), withContext(context, "duplicate rtpproxy name " +
                                                                     quoteForMessage(member.name) +
                                                                     " (first at line " +
                                                                     std::to_string(lineOf(seen.offset)) + ")"));
        }
      }
      member_names.push_back(Seen{member.name, member_node.child("name").offset_debug()});
      cluster.members.push_back(std::move(member));
    }
    // After the members' own checks, so that a file's first error comes first.
    for (size_t i = 0; i < cluster.members.size(); ++i) {
      if (auto loop = selfLoopError(cluster.control, cluster.members[i].name, cluster.members[i].address)) {
        failAt(children.repeated[i], withContext(context, std::move(*loop)));
      }
    }
    return cluster;
  }

  // Equal for two control sockets that could not both be bound: the same
  // unix path (unix or cunix), or the same host and port of one socket type.
  static std::string endpointKey(const SocketAddress& a) {
    if (isUnixPath(a.transport)) return "path " + a.path;
    return std::string(isDatagram(a.transport) ? "dgram " : "stream ") + a.display();
  }

  // The Prometheus endpoint: an HTTP listener, so TCP only and no default port.
  SocketAddress loadMetrics(const pugi::xml_node& node) {
    const std::string context = "<metrics>";
    rejectAttributes(node, context);
    const Children children = collect(node, context, {"address"});
    const pugi::xml_node address = children.get("address");
    if (!address) failAt(node, "<metrics>: missing <address>");
    const std::string text = leafValue(address, context);
    const bool v6 = !text.empty() && (text.front() == '[' || std::count(text.begin(), text.end(), ':') > 1);
    return checkAddress(address, v6 ? Transport::kTcp6 : Transport::kTcp, context, 0);
  }

  DisconnectNotifyConfig loadDisconnectNotify(const pugi::xml_node& node, const std::string& context) {
    rejectAttributes(node, context);
    const Children children = collect(node, context, {"inbound_address", "dest_socket_prefix"});
    DisconnectNotifyConfig dn;
    const pugi::xml_node inbound = require(children, "inbound_address", node, context);
    const std::string text = leafValue(inbound, context);
    const bool v6 = !text.empty() && (text.front() == '[' || std::count(text.begin(), text.end(), ':') > 1);
    dn.inbound_address = checkAddress(inbound, v6 ? Transport::kTcp6 : Transport::kTcp, context, 0);

    const pugi::xml_node prefix = require(children, "dest_socket_prefix", node, context);
    dn.dest_socket_prefix = leafValue(prefix, context);
    if (dn.dest_socket_prefix.empty()) failAt(prefix, withContext(context, "<dest_socket_prefix> must not be empty"));
    // The notification's suffix is appended: leave room for at least one byte.
    if (dn.dest_socket_prefix.size() >= kMaxUnixPathBytes) {
      failAt(prefix, withContext(context, "<dest_socket_prefix> is " + std::to_string(dn.dest_socket_prefix.size()) +
                                              " bytes, at most " + std::to_string(kMaxUnixPathBytes - 1) +
                                              " allowed"));
    }
    return dn;
  }

  CapacityLimit loadCapacityLimit(const pugi::xml_node& node, const std::string& context) {
    rejectAttributes(node, context, "type");
    for (pugi::xml_node child : node.children()) {
      if (child.type() == pugi::node_element) {
        failAt(child, withContext(context, "<capacity_limit> must not contain elements, got " + tag(child.name())));
      }
      rejectText(child, context, "<capacity_limit>");
    }
    pugi::xml_attribute type = node.attribute("type");
    if (!type) failAt(node, withContext(context, "<capacity_limit> needs type=\"soft\" or type=\"hard\""));
    const std::string_view value = trim(type.value());
    if (equalsIgnoreCase(value, "soft")) return CapacityLimit::kSoft;
    if (equalsIgnoreCase(value, "hard")) return CapacityLimit::kHard;
    failAt(node, withContext(context, "<capacity_limit> type must be \"soft\" or \"hard\", got " +
                                          quoteForMessage(value)));
  }

  ClusterTuning loadTuning(const pugi::xml_node& node, const std::string& context) {
    rejectAttributes(node, context);
    const Children children =
        collect(node, context,
                {"heartbeat_interval", "command_timeout", "command_retries", "heartbeat_failures",
                 "offline_probe_interval", "session_table_size", "control_idle_timeout"});
    ClusterTuning tuning;
    struct Field {
      std::string_view name;
      uint32_t ClusterTuning::*field;
      uint32_t min;
      uint32_t max;
    };
    static constexpr Field kFields[] = {
        {"heartbeat_interval", &ClusterTuning::heartbeat_interval_ms, 100, 60000},
        {"command_timeout", &ClusterTuning::command_timeout_ms, 10, 10000},
        {"command_retries", &ClusterTuning::command_retries, 0, 10},
        {"heartbeat_failures", &ClusterTuning::heartbeat_failures, 1, 100},
        {"offline_probe_interval", &ClusterTuning::offline_probe_interval_ms, 100, 3600000},
        {"session_table_size", &ClusterTuning::session_table_size, 1024, 1u << 26},
        {"control_idle_timeout", &ClusterTuning::control_idle_timeout_ms, 0, 86400000},
    };
    for (const Field& f : kFields) {
      if (pugi::xml_node child = children.get(f.name)) {
        tuning.*f.field = checkInteger(child, context, f.min, f.max, " in <tuning>");
      }
    }
    // Heartbeats are forwarded commands too: one must be decided before the
    // next is due.
    if (tuning.command_timeout_ms >= tuning.heartbeat_interval_ms) {
      failAt(node, withContext(context, "<tuning>: <command_timeout> (" + std::to_string(tuning.command_timeout_ms) +
                                            " ms) must be less than <heartbeat_interval> (" +
                                            std::to_string(tuning.heartbeat_interval_ms) + " ms)"));
    }
    return tuning;
  }

  MemberConfig loadMember(const pugi::xml_node& node, size_t index, const std::string& cluster_name) {
    const std::string peeked = peekName(node);
    const std::string context = (peeked.empty() ? "rtpproxy #" + std::to_string(index)
                                                : "rtpproxy " + quoteForMessage(peeked)) +
                                " in cluster " + quoteForMessage(cluster_name);
    rejectAttributes(node, context);
    const Children children = collect(node, context, kMemberFieldKeys);
    MemberConfig member;
    for (const MemberFieldSpec& spec : kMemberFields) {
      const pugi::xml_node field = spec.required ? require(children, spec.key, node, context) : children.get(spec.key);
      if (!field) continue;
      check(field, context, setMemberField(member, spec.field, leafValue(field, context), tag(spec.key)));
    }
    return member;
  }

  std::string_view text_;
  std::string_view display_name_;
  // Files may hold many clusters: no quadratic duplicate checks.
  std::unordered_map<std::string, ptrdiff_t> cluster_names_;    // name -> offset of its <name>
  std::unordered_map<std::string, std::string> controls_;       // endpointKey -> cluster name
};

}  // namespace

LoadResult loadConfigText(std::string_view xml, std::string_view display_name) {
  try {
    return Loader(xml, display_name).run();
  } catch (...) {
    // Only allocation of the error line itself can get here.
    return LoadResult{std::nullopt, "out of memory"};
  }
}

LoadResult loadConfigFile(const std::string& path) {
  try {
    const auto fail = [&path](const std::string& why) { return LoadResult{std::nullopt, path + ": " + why}; };
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
    // writer, forever (a reload would hang the supervisor). A symlink is
    // followed (the reference accepts one); its target must be a regular file.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return fail(std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      return fail("not a regular file");
    }
    if (static_cast<uint64_t>(st.st_size) > kMaxConfigBytes) {
      ::close(fd);
      return fail("file is larger than " + std::to_string(kMaxConfigBytes >> 20) + " MiB");
    }
    std::string text;
    text.resize(static_cast<size_t>(st.st_size));
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = ::read(fd, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const int err = errno;
        ::close(fd);
        return fail(std::string("cannot read: ") + std::strerror(err));
      }
      if (n == 0) break;  // shrank while reading: parse what is there
      done += static_cast<size_t>(n);
    }
    ::close(fd);
    text.resize(done);
    return loadConfigText(text, path);
  } catch (...) {
    return LoadResult{std::nullopt, path + ": out of memory"};
  }
}

}  // namespace rtpc
