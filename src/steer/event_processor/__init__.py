"""EventProcessor: filter, transform, correlate, batch and deliver the events of every observed call
(processor.py: the configuration and the pipeline; worker.py: the worker thread, its queue and batching;
stages.py: filters, transformers, metrics)."""

from steer.event_processor.processor import EventProcessor, create_event_processor
from steer.event_processor.stages import EventTransformer, PredicateFilter, ProcessorMetrics

__all__ = ["EventProcessor", "EventTransformer", "PredicateFilter", "ProcessorMetrics", "create_event_processor"]
