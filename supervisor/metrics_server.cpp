#include "supervisor/metrics_server.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string_view>

namespace rtpc {
namespace {

// A scrape request is one short line and a few headers.
constexpr ev_ssize_t kMaxHeaderBytes = 8192;
constexpr ev_ssize_t kMaxBodyBytes = 1024;
constexpr int kIdleTimeoutSeconds = 30;

uint16_t boundPort(evutil_socket_t fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
  return 0;
}

}  // namespace

std::unique_ptr<MetricsServer> MetricsServer::create(event_base* base, const SocketAddress& address, Render render,
                                                     std::string& error) {
  std::unique_ptr<MetricsServer> s(new MetricsServer(address, std::move(render)));
  s->http_ = evhttp_new(base);
  if (s->http_ == nullptr) {
    error = "metrics " + address.uri() + ": evhttp_new failed";
    return nullptr;
  }
  evhttp_set_allowed_methods(s->http_, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
  evhttp_set_max_headers_size(s->http_, kMaxHeaderBytes);
  evhttp_set_max_body_size(s->http_, kMaxBodyBytes);
  evhttp_set_timeout(s->http_, kIdleTimeoutSeconds);
  evhttp_set_gencb(
      s->http_, [](evhttp_request* r, void* arg) { static_cast<MetricsServer*>(arg)->onRequest(r); }, s.get());
  errno = 0;
  evhttp_bound_socket* bound = evhttp_bind_socket_with_handle(s->http_, address.host.c_str(), address.port);
  if (bound == nullptr) {
    error = "metrics " + address.uri() + ": cannot bind" + (errno != 0 ? std::string(": ") + std::strerror(errno) : "");
    return nullptr;
  }
  s->address_.port = boundPort(evhttp_bound_socket_get_fd(bound));
  return s;
}

MetricsServer::~MetricsServer() {
  if (http_ != nullptr) evhttp_free(http_);
}

void MetricsServer::onRequest(evhttp_request* request) {
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(request);
  const char* path = uri != nullptr ? evhttp_uri_get_path(uri) : nullptr;
  evkeyvalq* headers = evhttp_request_get_output_headers(request);
  if (path == nullptr || std::string_view(path) != "/metrics") {
    evhttp_add_header(headers, "Content-Type", "text/plain; charset=utf-8");
    evbuffer* body = evhttp_request_get_output_buffer(request);
    evbuffer_add(body, "not found; try /metrics\n", 24);
    evhttp_send_reply(request, HTTP_NOTFOUND, "Not Found", body);
    return;
  }
  const std::string text = render_();
  evhttp_add_header(headers, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
  evbuffer* body = evhttp_request_get_output_buffer(request);
  evbuffer_add(body, text.data(), text.size());
  evhttp_send_reply(request, HTTP_OK, "OK", body);
}

}  // namespace rtpc
