// Notices that an HTTP client went away while its request is still being computed. cpp-httplib 0.11 does
// not hand the socket to handlers, so the probe finds it by its address pair (unique while the handler
// runs: the connection's thread is the one running the handler) and polls it for a hang-up.
#pragma once
#include <string>

namespace vlm::server {

class ConnectionProbe {
 public:
  ConnectionProbe() = default;
  ConnectionProbe(const std::string& local_addr, int local_port, const std::string& remote_addr, int remote_port);

  // True once the peer has closed or reset the connection. Cheap (one poll(2)); false if the socket is unknown.
  bool closed() const;
  bool found() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace vlm::server
