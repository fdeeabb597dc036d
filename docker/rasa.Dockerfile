# Rasa 3.6 NLU server for the `rasa` backend, trained from nlu_data/ at build time.
# Build from the repository root:  docker build -f docker/rasa.Dockerfile -t replydesk-rasa .
# Serves POST /model/parse on 5005; replydesk falls back to its embedded engine (and
# counts replydesk_nlu_rasa_fallbacks_total) when this server is down or slow.

FROM rasa/rasa:3.6.21
WORKDIR /app
# Same pipeline and training data as scripts/rasa.sh uses locally. The FAQ bank and
# response files are replydesk's own formats; Rasa reads only nlu_data/nlu/.
COPY --chown=1001:0 nlu_data/config.yml ./config.yml
COPY --chown=1001:0 nlu_data/nlu ./data/nlu
USER 1001
RUN rasa train nlu --config config.yml --nlu data/nlu --out models --fixed-model-name replydesk
EXPOSE 5005
HEALTHCHECK --interval=15s --timeout=3s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:5005/status', timeout=2)"]
# The image's entrypoint is `rasa`.
CMD ["run", "--enable-api", "--port", "5005", "--model", "models/replydesk.tar.gz"]
