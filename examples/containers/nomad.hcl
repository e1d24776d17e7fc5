# examples/containers/nomad.hcl - a Nomad job running the image of
# examples/Dockerfile with evmon init as the entrypoint and evmon daemon
# supervising the services of evmon.ini.
#
#   nomad job run examples/containers/nomad.hcl
job "evmon-demo" {
  datacenters = ["dc1"]
  type        = "service"

  group "evmon" {
    network {
      port "metrics" {
        to = 9100
      }
    }

    task "evmon" {
      driver = "docker"

      config {
        image      = "evmon-demo:latest"
        entrypoint = ["/usr/bin/evmon", "init", "--"]
        args       = ["/usr/bin/evmon", "daemon", "-c", "/local/evmon.ini"]
        ports      = ["metrics"]
      }

      # read when the job is submitted, from the directory `nomad job run` runs in
      template {
        data        = file("examples/containers/evmon.ini")
        destination = "local/evmon.ini"
      }

      # Nomad sends SIGTERM, then SIGKILL after this: longer than stop_timeout
      kill_timeout = "15s"

      service {
        name = "evmon-demo-metrics"
        port = "metrics"

        check {
          type     = "script"
          command  = "/usr/bin/evmon"
          args     = ["ctl", "is-active", "app", "worker"]
          interval = "10s"
          timeout  = "5s"
        }
      }
    }
  }
}
