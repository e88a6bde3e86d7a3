#pragma once
// AdminServer: the admin socket's I/O (REFERENCE.md section 3, docs/admin.md).
// A unix stream socket (mode 0660, owner from -o) or TCP (meant for loopback:
// the protocol has no authentication). Several commands per connection, one
// per line, answered strictly in order: while a command waits for its answer
// (a worker's), the following lines wait in the buffer. Untrusted input: a
// line longer than kMaxAdminLineBytes is answered with an error and the
// connection closed; a client that sends without reading is cut off when its
// unread answers pass a bound; connections are capped and idle ones closed.
//
// What a line means is the Handler's business (the supervisor); this class
// only frames lines and answers.

#include <event2/event.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "shared/address.h"
#include "supervisor/control_socket.h"

struct evconnlistener;
struct bufferevent;

namespace rtpc {

class AdminServer {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    // One line without its "\n". The handler must call answer(connection,
    // ...) exactly once, now or later (the connection may be gone by then;
    // answer() then does nothing).
    virtual void onAdminLine(uint64_t connection, std::string_view line) = 0;
  };

  struct Limits {
    size_t max_connections = 64;
    size_t max_unread_answer_bytes = size_t{4} << 20;
    uint32_t idle_timeout_ms = 300000;
  };

  static std::unique_ptr<AdminServer> create(event_base* base, const SocketAddress& address,
                                             const SocketOwner& owner, Handler* handler, std::string& error,
                                             Limits limits);
  static std::unique_ptr<AdminServer> create(event_base* base, const SocketAddress& address,
                                             const SocketOwner& owner, Handler* handler, std::string& error) {
    return create(base, address, owner, handler, error, Limits{});
  }
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // `text` is the complete answer (newlines included; may be empty). With
  // close_after the connection is closed once it is written.
  void answer(uint64_t connection, std::string_view text, bool close_after = false);
  // Closes the socket (removing a unix socket file); connections end too.
  void close();

  const SocketAddress& address() const { return socket_->address(); }
  size_t connections() const { return connections_.size(); }

  struct Connection;

 private:
  AdminServer(event_base* base, Handler* handler, Limits limits);
  void onAccept(int fd);
  void onRead(Connection& c);
  void onEvent(Connection& c, short what);
  void onWritten(Connection& c);
  void processLines(Connection& c);
  void scheduleFree(uint64_t id);
  void freeConnection(uint64_t id);

  event_base* base_;
  Handler* handler_;
  Limits limits_;
  std::unique_ptr<ControlSocket> socket_;
  evconnlistener* listener_ = nullptr;
  std::map<uint64_t, std::unique_ptr<Connection>> connections_;
  uint64_t next_id_ = 1;
  // Connections are never freed inside their own callbacks: queued here.
  event* reaper_ = nullptr;
  std::vector<uint64_t> to_free_;
};

}  // namespace rtpc
