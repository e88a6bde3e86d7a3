#include "supervisor/admin_server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdlib>
#include "shared/admin_command.h"
#include "shared/time_util.h"

namespace rtpc {

struct AdminServer::Connection {
  AdminServer* server = nullptr;
  uint64_t id = 0;
  bufferevent* bev = nullptr;
  bool busy = false;        // a line was handed to the handler, no answer yet
  bool processing = false;  // inside processLines (answer() may come from there)
  bool eof = false;
  bool closing = false;
  ~Connection() {
    if (bev != nullptr) bufferevent_free(bev);
  }
};

namespace {

// The admin protocol has no authentication; TCP is meant for loopback.
bool isLoopback(const SocketAddress& a) {
  ResolvedAddress r;
  std::string ignored;
  if (!resolveAddress(a, r, ignored)) return false;
  if (r.family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&r.storage);
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (r.family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&r.storage);
    return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
  }
  return true;
}

}  // namespace

AdminServer::AdminServer(event_base* base, Handler* handler, Limits limits)
    : base_(base), handler_(handler), limits_(limits) {}

std::unique_ptr<AdminServer> AdminServer::create(event_base* base, const SocketAddress& address,
                                                 const SocketOwner& owner, Handler* handler, std::string& error,
                                                 Limits limits) {
  std::unique_ptr<AdminServer> s(new AdminServer(base, handler, limits));
  std::string why;
  s->socket_ = ControlSocket::bind(address, owner, 0660, why);
  if (!s->socket_) {
    error = "admin socket: " + why;
    return nullptr;
  }
  if (!isUnixPath(address.transport) && !isLoopback(address)) {
    spdlog::warn("ADMIN_NOT_LOOPBACK address={} note=\"the admin protocol has no authentication\"", address.uri());
  }
  const int fd = s->socket_->fd();
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  s->listener_ = evconnlistener_new(
      base,
      [](evconnlistener*, evutil_socket_t client, sockaddr*, int, void* arg) {
        static_cast<AdminServer*>(arg)->onAccept(client);
      },
      s.get(), LEV_OPT_CLOSE_ON_EXEC, 0, fd);
  if (s->listener_ == nullptr) {
    error = "admin socket: evconnlistener_new failed";
    return nullptr;
  }
  s->reaper_ = event_new(
      base, -1, 0,
      [](evutil_socket_t, short, void* arg) {
        auto* self = static_cast<AdminServer*>(arg);
        std::vector<uint64_t> ids;
        ids.swap(self->to_free_);
        for (const uint64_t id : ids) self->freeConnection(id);
      },
      s.get());
  return s;
}

AdminServer::~AdminServer() {
  close();
  if (reaper_ != nullptr) event_free(reaper_);
}

void AdminServer::close() {
  if (listener_ != nullptr) evconnlistener_free(listener_);
  listener_ = nullptr;
  connections_.clear();
  if (socket_) socket_->close();
}

void AdminServer::onAccept(int fd) {
  if (connections_.size() >= limits_.max_connections) {
    spdlog::warn("ADMIN_CONNECTION_REFUSED reason=too_many connections={}", connections_.size());
    ::close(fd);
    return;
  }
  bufferevent* bev = bufferevent_socket_new(base_, fd, BEV_OPT_CLOSE_ON_FREE);
  if (bev == nullptr) {
    ::close(fd);
    return;
  }
  auto c = std::make_unique<Connection>();
  c->server = this;
  c->id = next_id_++;
  c->bev = bev;
  bufferevent_setcb(
      bev,
      [](bufferevent*, void* arg) {
        auto* conn = static_cast<Connection*>(arg);
        conn->server->onRead(*conn);
      },
      [](bufferevent*, void* arg) {
        auto* conn = static_cast<Connection*>(arg);
        conn->server->onWritten(*conn);
      },
      [](bufferevent*, short what, void* arg) {
        auto* conn = static_cast<Connection*>(arg);
        conn->server->onEvent(*conn, what);
      },
      c.get());
  // Reading pauses while this much waits behind a command in progress.
  bufferevent_setwatermark(bev, EV_READ, 0, 64 * 1024);
  const timeval idle = msToTimeval(limits_.idle_timeout_ms);
  bufferevent_set_timeouts(bev, &idle, nullptr);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
  connections_.emplace(c->id, std::move(c));
}

void AdminServer::onRead(Connection& c) { processLines(c); }

void AdminServer::processLines(Connection& c) {
  if (c.processing) return;
  c.processing = true;
  evbuffer* input = bufferevent_get_input(c.bev);
  while (!c.busy && !c.closing) {
    size_t length = 0;
    char* line = evbuffer_readln(input, &length, EVBUFFER_EOL_LF);
    if (line == nullptr) {
      if (evbuffer_get_length(input) > kMaxAdminLineBytes + 1) {
        // No way to find the next command's start reliably: answer, close.
        bufferevent_write(c.bev, "ERROR: command line is longer than 4096 bytes\n", 46);
        c.closing = true;
      }
      break;
    }
    const std::string text(line, length);
    std::free(line);
    c.busy = true;
    handler_->onAdminLine(c.id, text);
  }
  c.processing = false;
  if (!c.busy && c.eof) c.closing = true;
  if (c.closing) {
    bufferevent_disable(c.bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(c.bev)) == 0) scheduleFree(c.id);
  }
}

void AdminServer::answer(uint64_t connection, std::string_view text, bool close_after) {
  const auto it = connections_.find(connection);
  if (it == connections_.end()) return;
  Connection& c = *it->second;
  if (!text.empty()) bufferevent_write(c.bev, text.data(), text.size());
  c.busy = false;
  if (close_after) c.closing = true;
  if (evbuffer_get_length(bufferevent_get_output(c.bev)) > limits_.max_unread_answer_bytes) {
    spdlog::warn("ADMIN_CONNECTION_DROPPED reason=answers_not_read");
    c.closing = true;
    evbuffer_drain(bufferevent_get_output(c.bev), evbuffer_get_length(bufferevent_get_output(c.bev)));
  }
  processLines(c);
}

void AdminServer::onWritten(Connection& c) {
  if (c.closing) scheduleFree(c.id);
}

void AdminServer::onEvent(Connection& c, short what) {
  if ((what & BEV_EVENT_EOF) != 0 && (what & BEV_EVENT_ERROR) == 0) {
    c.eof = true;
    processLines(c);
    return;
  }
  // Error or idle timeout: nothing more can be delivered.
  c.closing = true;
  scheduleFree(c.id);
}

void AdminServer::scheduleFree(uint64_t id) {
  to_free_.push_back(id);
  event_active(reaper_, 0, 0);
}

void AdminServer::freeConnection(uint64_t id) { connections_.erase(id); }

}  // namespace rtpc
