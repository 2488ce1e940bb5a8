from .drawing import load_rgb, ranked_list_title
from .pictures import (class_graph_epoch, ranked_list_rows, select_queries,
                       spread_indices, tool_visualizer)
from .ranking import average_precisions, query_ranking, rank_order
from .reid_visualizer import ReIDVisualizer

__all__ = [
    'ReIDVisualizer', 'load_rgb', 'ranked_list_title', 'query_ranking',
    'rank_order', 'average_precisions', 'spread_indices', 'select_queries',
    'ranked_list_rows', 'class_graph_epoch', 'tool_visualizer'
]
