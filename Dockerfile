# skiff in a container, for CI clusters and k3d-style setups:
#   docker build -t skiff .
#   docker run -d --privileged --name skiff -p 6443:6443 \
#     -v skiff-data:/var/lib/skiff -v "$PWD/out:/output" \
#     -e SKIFF_KUBECONFIG_OUTPUT=/output/kubeconfig.yaml -e SKIFF_KUBECONFIG_MODE=644 \
#     skiff server --disable-agent
# The build needs network access to the Go module proxy; nothing else.

FROM golang:1.26-bookworm AS build
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
 && echo 'root:x:0:' > /rootfs/etc/group

# The binary is static (CGO_ENABLED=0): the final image holds it, its
# kubectl link, and the few directories it writes to.
FROM scratch
COPY --from=build /rootfs/ /
ENV PATH=/bin
VOLUME /var/lib/skiff
EXPOSE 6443
ENTRYPOINT ["/bin/skiff"]
CMD ["server"]
