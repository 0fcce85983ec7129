# Built by deploy/build-images.sh from a prepared context (binaries + their glibc libraries).
FROM scratch
COPY rootfs/ /
# /data is the store's volume; a new named volume takes this ownership.
COPY --chown=10001:10001 data/ /data/
# /secrets holds the cluster secrets: init mounts one volume per role on /secrets/<role>
# (`mailrootctl cluster init --by-role` on first start), a node mounts its role's on /secrets.
COPY --chown=10001:10001 secrets/ /secrets/
COPY --chown=10001:10001 tmp/ /tmp/
USER 10001:10001
ENTRYPOINT []
