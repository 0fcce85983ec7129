# Built by deploy/build-images.sh from a prepared context (binaries + their glibc libraries).
FROM scratch
COPY rootfs/ /
# /data is the store's volume; a new named volume takes this ownership.
COPY --chown=10001:10001 data/ /data/
# /secrets is the cluster-secrets volume (`mailrootctl cluster init` on first start).
COPY --chown=10001:10001 secrets/ /secrets/
COPY --chown=10001:10001 tmp/ /tmp/
USER 10001:10001
ENTRYPOINT []
