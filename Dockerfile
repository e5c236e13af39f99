# skiff in a container, for CI clusters and k3d-style setups:
#   docker build -t skiff .
#   docker run -d --privileged --name skiff -p 6443:6443 -p 80:80 -p 443:443 \
#     --tmpfs /run --tmpfs /var/run \
#     -v skiff-data:/var/lib/skiff -v skiff-kubelet:/var/lib/kubelet -v "$PWD/out:/output" \
#     -e SKIFF_KUBECONFIG_OUTPUT=/output/kubeconfig.yaml -e SKIFF_KUBECONFIG_MODE=644 \
#     skiff server
# (add --disable-agent for a control plane without a node). The node needs
# --privileged: it creates cgroups, mounts, network interfaces and firewall
# rules. The build needs network access to the Go module proxy and Debian's
# apt; nothing else.

FROM golang:1.26-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables ipset libseccomp-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN scripts/build \
 && mkdir -p /rootfs/bin /rootfs/tmp /rootfs/etc/skiff /rootfs/var/lib/skiff /rootfs/output \
 && chmod 1777 /rootfs/tmp \
 && cp bin/skiff /rootfs/bin/skiff \
 && ln -s skiff /rootfs/bin/kubectl \
 && echo 'root:x:0:0:root:/root:/bin/skiff' > /rootfs/etc/passwd \
 && echo 'root:x:0:' > /rootfs/etc/group \
 && for f in /usr/sbin/xtables-nft-multi /usr/sbin/ipset $(ldd /usr/sbin/xtables-nft-multi /usr/sbin/ipset | awk '/=>/ {print $3} /ld-linux/ {print $1}' | sort -u); do \
      cp -L --parents "$f" /rootfs/; done \
 && cp -r --parents "/usr/lib/$(gcc -print-multiarch)/xtables" /rootfs/ \
 && for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do \
      ln -s xtables-nft-multi "/rootfs/usr/sbin/$t"; done \
 && ln -s skiff /rootfs/bin/ctr && ln -s skiff /rootfs/bin/crictl

# The binary is static (CGO_ENABLED=0) and carries runc, the shim and the
# CNI plugins: the final image holds it, its tool links, iptables (the host
# tool kube-proxy and flannel call) and ipset (the NetworkPolicy
# controller's) with their libraries, and the few directories skiff writes
# to.
FROM scratch
COPY --from=build /rootfs/ /
ENV PATH=/bin:/usr/sbin
VOLUME /var/lib/skiff /var/lib/kubelet
EXPOSE 6443 80 443
ENTRYPOINT ["/bin/skiff"]
CMD ["server"]
