// rtp_cluster_client: the admin CLI client (docs/admin.md).

#include <cstdio>

#include "cli/admin_client.h"

int main(int argc, char** argv) { return rtpc::runAdminClient(argc, argv, stdin, stdout, stderr); }
